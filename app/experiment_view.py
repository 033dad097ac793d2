"""What every experiment page shares: Run and Stop, a progress bar while the kitchen measures, saved results.

A run is an `ExperimentJob` in the selected model's queue (app.kitchen), so it never overlaps a generation on
the same model. Each finished run is saved under the data folder; the page shows the newest saved result for
this experiment (this visitor's latest run, once it finishes) and can reload any earlier one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from app.kitchen import ExperimentJob
from app.presentation import show_chart
from app.state import remember
from app.text import explanation, literal
from app.visitors import visible_files
from app.watching import redraw_while, show_waiting, submit_job
from engine import EngineError, TraceFormatError
from engine.experiments import ExperimentResult, Options, load_result, saved_results
from engine.units import fmt_bytes

PROGRESS_REDRAW_SECONDS = 0.5


@st.cache_data(show_spinner=False, max_entries=64)
def read_result(path: str, modified_ns: int) -> ExperimentResult:
    """A saved result, parsed and checked once per file version."""
    return load_result(path)


def latest_result(name: str) -> ExperimentResult | None:
    """The newest readable, whole saved result of an experiment this visitor may see (unreadable and stopped ones
    skipped), or None."""
    for path in visible_files(saved_results(name)):
        try:
            result = read_result(str(path), path.stat().st_mtime_ns)
        except (TraceFormatError, OSError):
            continue
        if result.stopped is None:
            return result
    return None


def result_label(path: Path, result: ExperimentResult | None) -> str:
    """How a saved result is listed: when, which model, where."""
    if result is None:
        return f"{path.name} (unreadable)"
    model = result.model
    where = result.hardware.get("gpu") or result.hardware.get("cpu", "?")
    stopped = " · ⏹ stopped part-way" if result.stopped is not None else ""
    if result.hardware.get("device") == "remote":  # a server's sweep: its name and host, nothing more is known
        return f"{result.created_at.replace('T', ' ')[:19]} · {model.get('name')} · {model.get('source')}{stopped}"
    return (
        f"{result.created_at.replace('T', ' ')[:19]} · {model.get('name')} · {model.get('dtype')} on "
        f"{model.get('device')} ({where}){stopped}"
    )


def run_controls(name: str, options: Options, *, key: str, make_job: Callable[[], ExperimentJob] | None = None) -> None:
    """Run/Stop buttons and, while a run is queued or going, its live progress (redrawn in a fragment).

    `make_job`: the job to submit when it is not the local model's (a load sweep against the visitor's server).
    """
    job: ExperimentJob | None = st.session_state.get(f"{key}_job")
    busy = job is not None and job.active
    columns = st.columns([2, 1, 6])
    if columns[0].button("Run experiment", type="primary", disabled=busy, key=f"{key}_run"):
        try:
            options.check()
        except EngineError as err:
            st.warning(f"These options cannot run: {literal(err)}.")
            st.stop()
        job = make_job() if make_job is not None else ExperimentJob(experiment=name, options=options)
        submit_job(job, key=f"{key}_job")
    if columns[1].button("Stop", disabled=not busy, key=f"{key}_stop"):
        job.stop_pressed.set()
    if job is None:
        return
    if job.active:

        def progress() -> None:
            if not show_waiting(job):
                event = job.progress
                st.progress(event.fraction if event else 0.0, text=f"🔬 {event.message if event else 'Starting'}…")

        redraw_while(lambda: job.active, progress, every=PROGRESS_REDRAW_SECONDS)
    elif job.state == "failed":
        st.error(f"**This experiment failed.** {literal(job.error)}")
    elif job.state == "stopped" and job.result is not None:
        st.info(f"⏹ Stopped after {len(job.result.rows)} measured point(s): they are kept, marked stopped, below.")
    elif job.state == "stopped":
        st.info(
            "⏹ Stopped before anything was measured. Nothing was saved; the result below (if any) is an earlier one."
        )


def chosen_result(name: str, *, key: str) -> ExperimentResult | None:
    """The result to draw: this visitor's latest run, else the newest saved one, or one picked from the saved list."""
    paths = visible_files(saved_results(name))
    job: ExperimentJob | None = st.session_state.get(f"{key}_job")
    if (
        job is not None
        and job.state in ("done", "stopped")
        and job.saved_to is not None
        and st.session_state.get(f"{key}_shown_run") is not job
    ):
        st.session_state[f"{key}_shown_run"] = job  # a new run finished: show it
        st.session_state[f"{key}_saved"] = str(job.saved_to)
    if not paths:
        return job.result if job is not None and job.state == "done" else None
    results, problems = {}, []
    for path in paths:
        try:
            results[str(path)] = read_result(str(path), path.stat().st_mtime_ns)
        except (TraceFormatError, OSError) as err:
            problems.append(f"`{path.name}`: {err}")
    if problems:
        with st.expander(f"{len(problems)} saved file(s) could not be read and are skipped"):
            st.markdown("\n".join(f"- {problem}" for problem in problems))
    if not results:
        return None
    if st.session_state.get(f"{key}_saved") not in results:
        st.session_state[f"{key}_saved"] = next(iter(results))
    chosen = st.selectbox(
        f"Showing a saved result ({len(results)} for this experiment, newest first)",
        list(results),
        format_func=lambda path: result_label(Path(path), results.get(path)),
        key=remember(f"{key}_saved"),
    )
    return results[chosen]


def result_header(result: ExperimentResult, *, key: str) -> None:
    """The finding in large type, where it was measured, and the JSON download."""
    st.success(f"**Finding.** {literal(result.finding)}")
    hardware, model = result.hardware, result.model
    threads = f", {hardware['torch_threads']} CPU thread(s)" if hardware.get("torch_threads") else ""
    st.caption(
        f"Measured {result.created_at.replace('T', ' ')[:19]} UTC on "
        f"{hardware.get('gpu') or hardware.get('cpu', '?')}{threads} · "
        f"{model.get('name')} ({fmt_bytes(model.get('weight_bytes'))} of {model.get('dtype')} weights on "
        f"{model.get('device')}) · "
        f"options: {', '.join(f'{k}={v}' for k, v in result.settings.items())}"
    )
    st.download_button(
        "Download result (JSON)",
        json.dumps(result.to_dict(), ensure_ascii=False, indent=1).encode("utf-8"),
        file_name=f"{result.experiment}-{result.created_at.replace(':', '')[:17]}.json",
        mime="application/json",
        on_click="ignore",
        key=f"{key}_download",
    )


def experiment_section(name: str, options: Options, *, key: str) -> ExperimentResult | None:
    """Run controls, then the result to draw (None, with a hint, when there is none yet)."""
    run_controls(name, options, key=key)
    result = chosen_result(name, key=key)
    if result is None:
        st.info("No result yet: press **Run experiment** to measure it on this machine.")
        return None
    result_header(result, key=key)
    if result.stopped is not None:  # its points, as measured; the page's charts and lessons need a whole run
        st.warning(f"⏹ This run was stopped part-way ({literal(result.stopped)}). The points it measured:")
        st.dataframe(pd.DataFrame(list(result.rows)), hide_index=True)
        return None
    return result


def explained_charts(page: str, charts: list[tuple[str, dict]], *, key: str) -> None:
    """Charts side by side, each under its explanation: (section of assets/explain/<page>.md, figure spec)."""
    for column, (section, spec) in zip(st.columns(len(charts)), charts, strict=True):
        with column:
            st.markdown(explanation(page, section))
            show_chart(spec, key=f"{key}_chart_{section}")


def rows_table(result: ExperimentResult, columns: dict[str, str], *, formats: dict | None = None) -> None:
    """The measured rows as a table: these columns, in this order, under these names (blank where an older result
    lacks one), each passed through its formatter in `formats` if it has one."""
    table = pd.DataFrame(result.rows).reindex(columns=list(columns))
    for name, formatter in (formats or {}).items():
        table[name] = table[name].map(lambda value, f=formatter: f(value) if pd.notna(value) else "")
    st.dataframe(table.rename(columns=columns), hide_index=True)
