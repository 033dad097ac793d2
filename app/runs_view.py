"""The Runs page's pieces: the run list, import, downloads, label and delete, replay and compare.

Replay reads a trace's recorded times (engine.replay) and draws it exactly like the live page (app.run_view), so
it needs no model. Labels and deletes go through the run store (engine.store); this module only asks and draws.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from app.hosting import import_room, kitchen_config
from app.presentation import show_chart
from app.run_view import draw_run_charts, draw_server_metrics, run_html
from app.state import remember
from app.text import explanation, literal
from app.visitors import may_manage_runs, visitor_id
from app.watching import redraw_while
from engine import TokenRecord, TraceFormatError, summarize
from engine import figures as charts
from engine.experiments import ExperimentResult
from engine.replay import SPEEDS, ReplayClock, records_until
from engine.report import compare_summaries, render_report, run_names
from engine.store import REFERENCE, RunEntry, RunStore, is_imported
from engine.trace import Trace, trace_csv, trace_json

REPLAY_TEXT_SECONDS, REPLAY_CHART_SECONDS = 0.25, 1.0
RunKey = tuple[str, str, int, int]  # store root, relative path, size, modification time: one file version


@st.cache_data(show_spinner=False, max_entries=32)
def open_run(root: str, relative: str, size: int, mtime_ns: int) -> Trace | ExperimentResult:
    """One run, parsed once per file version."""
    return RunStore(root).open(relative)


@st.cache_data(show_spinner=False, max_entries=8)
def report_html(keys: tuple[RunKey, ...]) -> bytes:
    """The HTML report of some runs (plotly.js embedded: megabytes, so built once per selection)."""
    imported = [is_imported(key[1]) for key in keys]
    return render_report([open_run(*key) for key in keys], imported=imported).encode("utf-8")


@st.cache_data(show_spinner=False, max_entries=8)
def tokens_csv(key: RunKey) -> bytes:
    """A trace's per-token table as CSV."""
    return trace_csv(open_run(*key)).encode("utf-8")


def origin(entry: RunEntry) -> str:
    """Where a run's numbers come from, in one word: measured here, imported, or a shipped reference."""
    if entry.path.startswith(f"{REFERENCE}/"):
        return "reference"
    if entry.imported:
        return "imported"
    return "a server, timed here" if entry.path.startswith("remote/") else "measured here"


def describe(entry: RunEntry) -> str:
    """How a run is named in pickers (unique: Streamlit tells options apart by these names)."""
    what = f"“{entry.prompt_start[:40]}”" if entry.kind == "trace" else f"{entry.name} experiment"
    label = f"{entry.label[:60]} — " if entry.label else ""
    file = entry.path.split("/")[-1].removesuffix(".json")
    imported = "imported · " if entry.imported else ""
    return f"{imported}{label}{what} · {entry.model} · {entry.dtype} on {entry.device} · {file}"


def visible_runs(entries: list[RunEntry]) -> list[RunEntry]:
    """The runs this visitor sees: all of them for the owner or presenter, else their own and the shared ones."""
    if may_manage_runs():
        return entries
    return [entry for entry in entries if entry.visible_to(visitor_id())]


def import_section(store: RunStore) -> None:
    """Upload a trace or result; the store checks the whole file before keeping it (hosted mode: within quotas)."""
    st.markdown(explanation("runs", "share"))
    upload = st.file_uploader("Trace or experiment result", type=["json"], key="runs_upload")
    if upload is None or st.session_state.get("runs_imported") == upload.file_id:
        return
    st.session_state["runs_imported"] = upload.file_id
    owner = visitor_id()
    refused = import_room(
        imported_by_visitor=store.owned_imports(owner) if owner else 0,
        store_bytes=store.bytes_used() if kitchen_config().hosted else 0,
        file_bytes=upload.size,
    )
    if refused is not None:
        st.error(f"**{literal(upload.name)} was not imported** (nothing was changed): {refused}.")
        return
    try:
        relative = store.import_bytes(upload.getvalue(), filename=upload.name, owner=owner)
    except TraceFormatError as err:
        st.error(f"**{literal(upload.name)} was not imported** (nothing was changed): {literal(err)}.")
        return
    st.session_state["runs_selected"] = [relative]
    st.success(f"Imported {literal(upload.name)} as {literal(relative)}.")


def run_table(entries: list[RunEntry]) -> None:
    """Every run, one row each."""
    number = st.column_config.NumberColumn(format="%.1f")
    rows = [
        {
            "date (UTC)": e.created_at[:19].replace("T", " "), "kind": e.name, "origin": origin(e), "label": e.label,
            "model": e.model,
            "device": e.device, "dtype": e.dtype, "prompt or finding": e.prompt_start,
            "tokens": e.headline.get("tokens"), "TTFT (ms)": e.headline.get("ttft_ms"),
            "ITL p50 (ms)": e.headline.get("itl_p50_ms"), "decode tokens/s": e.headline.get("decode_tokens_per_s"),
            "file": e.path,
        }
        for e in entries
    ]  # fmt: skip
    columns = {"TTFT (ms)": number, "ITL p50 (ms)": number, "decode tokens/s": number}
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=columns)


def downloads(runs: list, keys: tuple[RunKey, ...], paths: list[str]) -> None:
    """JSON and CSV of one run; the HTML report of one or several."""
    columns = st.columns(3)
    if len(runs) == 1:
        name = paths[0].split("/")[-1]
        text = trace_json(runs[0]) if isinstance(runs[0], Trace) else json_of(runs[0])
        columns[0].download_button(
            "Download JSON", text.encode("utf-8"), file_name=name, mime="application/json", on_click="ignore",
            key="runs_download_json",
        )  # fmt: skip
        if isinstance(runs[0], Trace):
            columns[1].download_button(
                "Download tokens (CSV)", tokens_csv(keys[0]), file_name=name.replace(".json", ".csv"),
                mime="text/csv", on_click="ignore", key="runs_download_csv",
            )  # fmt: skip
    columns[2].download_button(
        "Download HTML report", report_html(keys), file_name="inference-kitchen-report.html", mime="text/html",
        on_click="ignore", key="runs_download_html",
        help="One file with the charts embedded; opens offline in any browser.",
    )  # fmt: skip


def json_of(result: ExperimentResult) -> str:
    """An experiment result in its file format, as text."""
    return json.dumps(result.to_dict(), ensure_ascii=False, indent=1)


def label_and_delete(store: RunStore, entry: RunEntry) -> None:
    """Label a kept run, share it (hosted mode), or delete it after a confirmation (references are read-only);
    a hosted kitchen's visitor only reads (the presenter manages runs)."""
    if entry.path.startswith(f"{REFERENCE}/"):
        return
    if not may_manage_runs():
        st.caption("Only the presenter labels, shares and deletes runs in this kitchen.")
        return
    if kitchen_config().hosted:
        shared = st.toggle(
            "Shared with every visitor", entry.shared, key=f"runs_shared_{entry.path}",
            help="A visitor sees their own runs and the shared ones.",
        )  # fmt: skip
        if shared != entry.shared:
            store.set_shared(entry.path, shared)
            st.rerun()
    columns = st.columns([3, 1, 1])
    label = columns[0].text_input("Label", entry.label, key=f"runs_label_{entry.path}", max_chars=120)
    if columns[1].button("Save label", key="runs_save_label"):
        store.set_label(entry.path, label)
        st.rerun()
    if columns[2].button("Delete…", key="runs_delete"):
        st.session_state["runs_confirm_delete"] = entry.path
    if st.session_state.get("runs_confirm_delete") != entry.path:
        return
    st.warning(f"Delete {literal(entry.path)} for good?")
    yes, no = st.columns([1, 6])
    if yes.button("Yes, delete it", type="primary", key="runs_delete_yes"):
        store.delete(entry.path)
        st.session_state.pop("runs_confirm_delete", None)
        st.rerun()  # the next run drops the deleted file from the selection
    if no.button("Keep it", key="runs_delete_no"):
        st.session_state.pop("runs_confirm_delete", None)
        st.rerun()


def replay_controls(path: str) -> dict | None:
    """The speed picker and Replay button; the replay under way for this run, if any."""
    columns = st.columns([2, 1, 5])
    speed = columns[0].radio(
        "Replay speed",
        SPEEDS,
        index=1,
        format_func=lambda s: f"x{s:g}",
        horizontal=True,
        key=remember("runs_replay_speed"),
    )
    if columns[1].button("▶ Replay", type="primary", key="runs_replay"):
        clock = ReplayClock(started_s=time.monotonic(), speed=speed)
        st.session_state["runs_replaying"] = {"path": path, "clock": clock}
        st.rerun()
    playing = st.session_state.get("runs_replaying")
    if not playing or playing["path"] != path:
        return None
    if playing["clock"].speed != speed:  # a new speed mid-replay: go on from here at that speed
        playing["clock"] = playing["clock"].at_speed(speed, now_s=time.monotonic())
    return playing


def draw_trace(run: Trace, playing: dict | None) -> None:
    """A trace drawn like the live page: whole, or replayed on its recorded clock."""
    model, kv_cache, prompt_tokens = run.model, bool(run.settings.get("kv_cache", True)), len(run.prompt["tokens"])
    client_clock = run.remote["clock"] if run.remote is not None else None  # where a remote run's times were taken
    if run.remote is not None:
        st.caption(literal(f"Recorded from {run.kitchen}: {run.remote['count_check']}."))
    if playing is None:
        records = list(run.events)
        status = f"Recorded: {len(records)} tokens."
        st.html(run_html(records, model=model, kv_cache=kv_cache, summary=run.summary, status=status, rich=True,
                         clock=client_clock))  # fmt: skip
        draw_run_charts(records, model=model, kv_cache=kv_cache, prompt_tokens=prompt_tokens, summary=run.summary,
                        key="runs_open")  # fmt: skip
        draw_server_metrics(run, key="runs_open")
        return
    clock: ReplayClock = playing["clock"]

    def so_far() -> list[TokenRecord]:
        return records_until(run, clock.recorded_ms(time.monotonic()) / 1000, speed=1.0)

    def text() -> None:
        records, finished = so_far(), clock.finished(run, now_s=time.monotonic())
        status = (
            f"✅ Replayed: {len(records)} tokens at x{clock.speed:g}."
            if finished
            else f"▶ Replaying at x{clock.speed:g}… {len(records)} of {len(run.events)} tokens."
        )
        if not records:
            st.html(f"<div class='ik-status'>{status}</div>")
            return
        summary = summarize(records, prompt_tokens=prompt_tokens)
        st.html(run_html(records, model=model, kv_cache=kv_cache, summary=summary, status=status, rich=finished,
                         clock=client_clock))  # fmt: skip

    def charts_so_far() -> None:
        records = so_far()
        if records:
            summary = summarize(records, prompt_tokens=prompt_tokens)
            draw_run_charts(records, model=model, kv_cache=kv_cache, prompt_tokens=prompt_tokens, summary=summary,
                            key="runs_replay")  # fmt: skip

    def replaying() -> bool:
        if not clock.finished(run, now_s=time.monotonic()):
            return True
        st.session_state.pop("runs_replaying", None)
        return False

    redraw_while(replaying, text, every=REPLAY_TEXT_SECONDS)
    redraw_while(lambda: not clock.finished(run, now_s=time.monotonic()), charts_so_far, every=REPLAY_CHART_SECONDS)


def compare(traces: list[Trace], *, imported: list[bool]) -> None:
    """Two or more traces: their summaries with ratios to the first, and the per-token charts overlaid."""
    st.markdown(explanation("runs", "compare"))
    names = run_names(traces, imported=imported)
    st.text("\n".join(names))  # what sets the runs apart; the table's and charts' "run N" refer to these
    st.dataframe(pd.DataFrame(compare_summaries(traces)), hide_index=True)
    left, right = st.columns(2)
    for index, (title, metric) in enumerate(charts.OVERLAYS):
        with left if index % 2 == 0 else right:
            st.markdown(f"**{title}**")
            show_chart(charts.overlay_chart(traces, names, metric=metric), key=f"runs_compare_{metric}")
