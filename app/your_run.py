"""Which recorded run a page teaches from: the newest that fits the lesson, said beside the numbers, and changeable.

A run with the KV cache off, sampled, in another dtype or from another machine would teach the wrong lesson
("decode is 80x slower than reading"), so the default skips it (engine.trace.lesson_misfits); a visitor may still
pick any saved run, and the page then says what makes it different.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.early import machine
from app.state import remember
from app.text import literal
from app.visitors import visible_files
from engine import Trace, TraceFormatError, load_trace
from engine.report import run_facets
from engine.trace import lesson_misfits, saved_trace_paths

LISTED = 50  # the newest runs offered in the picker


@st.cache_data(show_spinner=False)
def this_hardware() -> dict:
    """This machine as traces describe it (the engine's default device)."""
    return machine().hardware[machine().devices[0]]


@st.cache_data(show_spinner=False, max_entries=64)
def read_trace(path: str, modified_ns: int) -> Trace | None:
    """A saved trace, parsed once per file version (None when it does not read)."""
    try:
        return load_trace(path)
    except TraceFormatError:
        return None


def describe_settings(trace: Trace) -> str:
    """The settings that change the picture, in words (worded like the Runs page's comparisons)."""
    facets = run_facets(trace)
    return f"{facets['model']}, {facets['dtype']} on {facets['device']}, {facets['KV cache']}, {facets['temperature']}"


def your_run(*, key: str) -> Trace | None:
    """The run this page quotes (None when nothing was recorded here), with a picker and a line saying which."""
    paths = visible_files(saved_trace_paths())[:LISTED]
    if not paths:
        return None
    hardware = this_hardware()
    traces = {str(path): read_trace(str(path), path.stat().st_mtime_ns) for path in paths}
    readable = [path for path, trace in traces.items() if trace is not None]
    if not readable:
        return None
    # the newest that fits, from the traces already parsed (engine.trace.lesson_trace does the same from disk)
    fitting = next((path for path in readable if not lesson_misfits(traces[path], hardware=hardware)), None)
    if key in st.session_state and st.session_state[key] not in readable:
        del st.session_state[key]  # a pick whose file is gone: back to the default below
    # The default goes in `index`, not in session state set before the widget (that can leave the browser showing
    # another option than the one the page uses: see the Model box in app/sidebar.py).
    default = readable.index(fitting) if fitting is not None else 0

    def label(path: str) -> str:
        trace = traces[path]
        return f"{trace.created_at[:19].replace('T', ' ')} · {describe_settings(trace)} · {Path(path).stem}"

    chosen = st.selectbox(
        "Your run: the numbers on this page come from", readable, index=default, format_func=label, key=remember(key)
    )
    trace = traces[chosen]
    misfits = lesson_misfits(trace, hardware=hardware)
    summary = f"{trace.summary.new_tokens} tokens, {describe_settings(trace)}."
    if misfits:
        st.warning(
            f"This run does not fit the lesson: {literal('; '.join(misfits))}. Its numbers are shown as measured."
        )
    elif fitting is None:
        st.caption(summary)
    else:
        st.caption(f"The newest run recorded here that fits the lesson: {literal(summary)}")
    return trace


def complete_server_runs() -> dict[str, Trace]:
    """The readable, complete runs on a server (remote/) this visitor may see, newest first, by path (a stream that
    broke or was stopped is not one to price a service by)."""
    runs = {}
    for path in visible_files(saved_trace_paths(remote=True))[:LISTED]:
        trace = read_trace(str(path), path.stat().st_mtime_ns)
        if trace is not None and trace.remote.get("complete") and trace.finish_reason != "stopped":
            runs[str(path)] = trace
    return runs


def your_server_run(*, key: str) -> Trace | None:
    """The server run this page prices (the newest complete one unless the visitor picks another), or None."""
    runs = complete_server_runs()
    if not runs:
        return None
    if key in st.session_state and st.session_state[key] not in runs:
        del st.session_state[key]  # a pick whose file is gone: back to the newest

    def label(path: str) -> str:
        trace = runs[path]
        when = trace.created_at[:19].replace("T", " ")
        return f"{when} · {trace.model.get('name')} on {trace.remote.get('host')} · {trace.summary.new_tokens} tokens"

    chosen = st.selectbox(
        "Your server run: priced from", list(runs), format_func=label, key=remember(key),
        help="Priced when *Throughput from* is “your server run”. Only complete runs are offered: a stream that broke "
        "or was stopped says nothing about the service's speed.",
    )  # fmt: skip
    return runs[chosen]
