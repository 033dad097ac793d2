"""Runs: keep, label, compare, replay and share every trace and experiment result this dashboard has saved."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.runs_view import (
    compare,
    describe,
    downloads,
    draw_trace,
    import_section,
    label_and_delete,
    open_run,
    replay_controls,
    run_table,
    visible_runs,
)
from app.state import remember
from app.text import explanation, literal
from app.views import chip_style
from app.visitors import may_manage_runs
from engine import TraceFormatError
from engine.experiments import ExperimentResult
from engine.report import run_name
from engine.store import RunStore
from engine.trace import Trace

chip_style()
st.title("🗂️ Runs: keep, compare, replay, share")
st.markdown(explanation("runs", "intro"))
store = RunStore()
with st.expander("Import a trace or result (JSON)"):
    import_section(store)

# ---- the list ----------------------------------------------------------------------------------------------------
entries, problems = store.list()
entries = visible_runs(entries + store.references())  # hosted mode: a visitor's own and the shared ones
by_path = {entry.path: entry for entry in entries}
if problems and may_manage_runs():
    with st.expander(f"{len(problems)} file(s) in the store could not be read and are skipped"):
        for problem in problems:
            st.text(problem)
if not entries:
    st.info("No runs yet: generate an answer on the **Live inference** page or run an experiment; it is kept here.")
    st.stop()
run_table(entries)
st.session_state["runs_selected"] = [path for path in st.session_state.get("runs_selected", []) if path in by_path]
label = "Pick one run to open, or several traces to compare"
chosen = st.multiselect(label, list(by_path), format_func=lambda p: describe(by_path[p]), key=remember("runs_selected"))
if not chosen:
    st.stop()
keys = tuple((str(store.root), path, by_path[path].size, by_path[path].mtime_ns) for path in chosen)
try:
    runs = [open_run(*key) for key in keys]
except TraceFormatError as err:
    st.error(f"That run could not be opened: {literal(err)}.")
    st.stop()
downloads(runs, keys, chosen)

# ---- one run: label, delete, open, replay ------------------------------------------------------------------------
if len(runs) == 1:
    run = runs[0]
    label_and_delete(store, by_path[chosen[0]])
    if isinstance(run, ExperimentResult):
        st.success(f"**Finding.** {literal(run.finding)}")
        st.dataframe(pd.DataFrame(list(run.rows)), hide_index=True)
        st.stop()
    origin = " (imported: measured elsewhere, not by this installation)" if by_path[chosen[0]].imported else ""
    st.markdown(f"**{literal(run_name(run))}**{origin}")
    st.text(f"prompt: “{run.prompt['text']}”")
    st.markdown(explanation("runs", "replay"))
    draw_trace(run, replay_controls(chosen[0]))
    st.stop()

# ---- several: compare --------------------------------------------------------------------------------------------
traces = [run for run in runs if isinstance(run, Trace)]
imported = [by_path[path].imported for path, run in zip(chosen, runs, strict=True) if isinstance(run, Trace)]
if len(traces) < 2:
    st.info("Comparing needs two or more traces (experiment results are opened one at a time).")
    st.stop()
compare(traces, imported=imported)
