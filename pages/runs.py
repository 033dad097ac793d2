"""Runs: keep, label, compare, replay and share every trace and experiment result this dashboard has saved."""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from app.presentation import show_chart
from app.run_view import draw_run_charts, run_html
from app.text import explanation
from app.views import CHIP_STYLE
from engine import TraceFormatError, summarize
from engine import figures as charts
from engine.experiments import ExperimentResult
from engine.replay import SPEEDS, records_until, replay_seconds
from engine.report import compare_summaries, render_report, run_name
from engine.store import RunEntry, RunStore
from engine.trace import Trace

REPLAY_TEXT_SECONDS, REPLAY_CHART_SECONDS = 0.25, 1.0

st.html(CHIP_STYLE)
st.title("🗂️ Runs: keep, compare, replay, share")
st.markdown(explanation("runs", "intro"))
store = RunStore()


@st.cache_data(show_spinner=False, max_entries=32)
def open_run(root: str, relative: str, size: int, mtime_ns: int) -> Trace | ExperimentResult:
    """One run, parsed once per file version."""
    return RunStore(root).open(relative)


@st.cache_data(show_spinner=False, max_entries=8)
def report_html(keys: tuple[tuple[str, str, int, int], ...]) -> bytes:
    """The HTML report of some runs (plotly.js embedded: megabytes, so built once per selection)."""
    return render_report([open_run(*key) for key in keys]).encode("utf-8")


@st.cache_data(show_spinner=False, max_entries=8)
def trace_csv(key: tuple[str, str, int, int]) -> bytes:
    """A trace's per-token table as CSV."""
    trace = open_run(*key)
    table = pd.DataFrame([{**r.to_dict(), "top": " | ".join(f"{a.token!r} {a.prob:.4f}" for a in r.top)} for r in trace.events])
    return table.to_csv(index=False).encode("utf-8")


def describe(entry: RunEntry) -> str:
    """How a run is named in pickers (unique: Streamlit tells options apart by these names)."""
    what = f"“{entry.prompt_start[:40]}”" if entry.kind == "trace" else f"{entry.name} experiment"
    label = f"{entry.label[:60]} — " if entry.label else ""
    return f"{label}{what} · {entry.model} · {entry.dtype} on {entry.device} · {entry.path.split('/')[-1].removesuffix('.json')}"


# ---- import ---------------------------------------------------------------------------------------------------
with st.expander("Import a trace or result (JSON)"):
    st.markdown(explanation("runs", "share"))
    upload = st.file_uploader("Trace or experiment result", type=["json"], key="runs_upload")
    if upload is not None and st.session_state.get("runs_imported") != upload.file_id:
        try:
            relative = store.import_bytes(upload.getvalue(), filename=upload.name)
            st.session_state["runs_imported"] = upload.file_id
            st.session_state["runs_selected"] = [relative]
            st.success(f"Imported {upload.name} as `{relative}`.")
        except TraceFormatError as err:
            st.session_state["runs_imported"] = upload.file_id
            st.error(f"**{upload.name} was not imported** (nothing was changed): {err}.")

# ---- the list ----------------------------------------------------------------------------------------------------
entries, problems = store.list()
entries += store.references()
by_path = {entry.path: entry for entry in entries}
if problems:
    with st.expander(f"{len(problems)} file(s) in the store could not be read and are skipped"):
        st.markdown("\n".join(f"- `{problem}`" for problem in problems))
if not entries:
    st.info("No runs yet: generate an answer on the **Live inference** page or run an experiment, and it will be kept here.")
    st.stop()
st.dataframe(
    pd.DataFrame([{
        "date (UTC)": e.created_at[:19].replace("T", " "), "kind": e.name, "label": e.label, "model": e.model, "device": e.device, "dtype": e.dtype,
        "prompt or finding": e.prompt_start, "tokens": e.headline.get("tokens"), "TTFT (ms)": e.headline.get("ttft_ms"),
        "ITL p50 (ms)": e.headline.get("itl_p50_ms"), "decode tokens/s": e.headline.get("decode_tokens_per_s"), "file": e.path,
    } for e in entries]),
    hide_index=True,
    column_config={"TTFT (ms)": st.column_config.NumberColumn(format="%.1f"), "ITL p50 (ms)": st.column_config.NumberColumn(format="%.1f"),
                   "decode tokens/s": st.column_config.NumberColumn(format="%.1f")},
)
st.session_state["runs_selected"] = [path for path in st.session_state.get("runs_selected", []) if path in by_path]
chosen = st.multiselect("Pick one run to open, or several traces to compare", list(by_path), format_func=lambda p: describe(by_path[p]), key="runs_selected")
if not chosen:
    st.stop()
keys = tuple((str(store.root), path, by_path[path].size, by_path[path].mtime_ns) for path in chosen)
try:
    runs = [open_run(*key) for key in keys]
except TraceFormatError as err:
    st.error(f"That run could not be opened: {err}.")
    st.stop()

# ---- share -------------------------------------------------------------------------------------------------------------
cols = st.columns(3)
if len(runs) == 1:
    cols[0].download_button("Download JSON", json.dumps(runs[0].to_dict(), ensure_ascii=False, indent=1).encode("utf-8"),
                            file_name=chosen[0].split("/")[-1], mime="application/json", on_click="ignore", key="runs_download_json")
    if isinstance(runs[0], Trace):
        cols[1].download_button("Download tokens (CSV)", trace_csv(keys[0]), file_name=chosen[0].split("/")[-1].replace(".json", ".csv"),
                                mime="text/csv", on_click="ignore", key="runs_download_csv")
cols[2].download_button("Download HTML report", report_html(keys), file_name="inference-kitchen-report.html", mime="text/html",
                        on_click="ignore", key="runs_download_html", help="One file with the charts embedded; opens offline in any browser.")

# ---- one run: label, delete, open, replay ----------------------------------------------------------------------------------
if len(runs) == 1:
    entry, run = by_path[chosen[0]], runs[0]
    if entry.path.startswith("traces/") or entry.path.startswith("experiments/"):
        cols = st.columns([3, 1, 1])
        label = cols[0].text_input("Label", entry.label, key=f"runs_label_{entry.path}", max_chars=120)
        if cols[1].button("Save label", key="runs_save_label"):
            store.set_label(entry.path, label)
            st.rerun()
        if cols[2].button("Delete…", key="runs_delete"):
            st.session_state["runs_confirm_delete"] = entry.path
        if st.session_state.get("runs_confirm_delete") == entry.path:
            st.warning(f"Delete `{entry.path}` for good?")
            yes, no = st.columns([1, 6])
            if yes.button("Yes, delete it", type="primary", key="runs_delete_yes"):
                store.delete(entry.path)
                st.session_state.pop("runs_confirm_delete", None)
                st.rerun()  # the next run drops the deleted file from the selection
            if no.button("Keep it", key="runs_delete_no"):
                st.session_state.pop("runs_confirm_delete", None)
                st.rerun()
    if isinstance(run, ExperimentResult):
        st.success(f"**Finding.** {run.finding}")
        st.dataframe(pd.DataFrame(list(run.rows)), hide_index=True)
        st.stop()
    st.markdown(f"**{run_name(run)}** — prompt: “{run.prompt['text']}”")
    st.markdown(explanation("runs", "replay"))
    cols = st.columns([2, 1, 5])
    speed = cols[0].radio("Replay speed", SPEEDS, index=1, format_func=lambda s: f"x{s:g}", horizontal=True, key="runs_replay_speed")
    if cols[1].button("▶ Replay", type="primary", key="runs_replay"):
        st.session_state["runs_replaying"] = {"path": entry.path, "started": time.monotonic(), "speed": speed}
        st.rerun()
    playing = st.session_state.get("runs_replaying")
    model, kv_cache, prompt_tokens = run.model, bool(run.settings.get("kv_cache", True)), len(run.prompt["tokens"])
    if playing and playing["path"] == entry.path:

        def shown() -> tuple[list, bool]:
            elapsed = time.monotonic() - playing["started"]
            return records_until(run, elapsed, speed=playing["speed"]), elapsed >= replay_seconds(run, speed=playing["speed"])

        @st.fragment(run_every=REPLAY_TEXT_SECONDS)
        def replay_text() -> None:
            records, finished = shown()
            status = (f"✅ Replayed: {len(records)} tokens at x{playing['speed']:g}." if finished
                      else f"▶ Replaying at x{playing['speed']:g}… {len(records)} of {len(run.events)} tokens.")
            if records:
                summary = summarize(records, prompt_tokens=prompt_tokens)
                st.html(run_html(records, model=model, kv_cache=kv_cache, summary=summary, status=status, rich=finished))
            else:
                st.html(f"<div class='ik-status'>{status}</div>")
            if finished:
                st.session_state.pop("runs_replaying", None)
                st.rerun()

        @st.fragment(run_every=REPLAY_CHART_SECONDS)
        def replay_charts() -> None:
            records, _ = shown()
            if records:
                draw_run_charts(records, model=model, kv_cache=kv_cache, prompt_tokens=prompt_tokens,
                                summary=summarize(records, prompt_tokens=prompt_tokens), key="runs_replay")

        replay_text()
        replay_charts()
    else:
        records = list(run.events)
        st.html(run_html(records, model=model, kv_cache=kv_cache, summary=run.summary, status=f"Recorded: {len(records)} tokens.", rich=True))
        draw_run_charts(records, model=model, kv_cache=kv_cache, prompt_tokens=prompt_tokens, summary=run.summary, key="runs_open")
    st.stop()

# ---- several: compare -----------------------------------------------------------------------------------------------------------
traces = [run for run in runs if isinstance(run, Trace)]
if len(traces) < 2:
    st.info("Comparing needs two or more traces (experiment results are opened one at a time).")
    st.stop()
st.markdown(explanation("runs", "compare"))
names = [f"run {index + 1}: {run_name(trace)}" for index, trace in enumerate(traces)]
st.dataframe(pd.DataFrame(compare_summaries(traces)), hide_index=True)
left, right = st.columns(2)
for index, (title, metric) in enumerate(charts.OVERLAYS):
    with left if index % 2 == 0 else right:
        st.markdown(f"**{title}**")
        show_chart(charts.overlay_chart(traces, names, metric=metric), key=f"runs_compare_{metric}")
