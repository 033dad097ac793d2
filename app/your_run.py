"""Which recorded run a page teaches from: the newest that fits the lesson, said beside the numbers, and changeable.

A run with the KV cache off, sampled, in another dtype or from another machine would teach the wrong lesson
("decode is 80x slower than reading"), so the default skips it (engine.trace.lesson_misfits); a visitor may still
pick any saved run, and the page then says what makes it different.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.state import remember
from engine import Trace, TraceFormatError, load_trace
from engine.hardware import describe_hardware, pick_device
from engine.trace import lesson_misfits, saved_trace_paths

LISTED = 50  # the newest runs offered in the picker


@st.cache_data(show_spinner=False)
def this_hardware() -> dict:
    """This machine as traces describe it."""
    return describe_hardware(pick_device())


@st.cache_data(show_spinner=False, max_entries=64)
def read_trace(path: str, modified_ns: int) -> Trace | None:
    """A saved trace, parsed once per file version (None when it does not read)."""
    try:
        return load_trace(path)
    except TraceFormatError:
        return None


def describe_settings(trace: Trace) -> str:
    """The settings that change the picture, in words."""
    settings, model = trace.settings, trace.model
    sampling = "greedy" if not settings.get("temperature") else f"temperature {settings['temperature']:g}"
    cache = "KV cache on" if settings.get("kv_cache", True) else "KV cache off"
    return f"{model.get('name')}, {model.get('dtype')} on {model.get('device')}, {cache}, {sampling}"


def your_run(*, key: str) -> Trace | None:
    """The run this page quotes (None when nothing was recorded here), with a picker and a line saying which."""
    paths = saved_trace_paths()[:LISTED]
    if not paths:
        return None
    hardware = this_hardware()
    traces = {str(path): read_trace(str(path), path.stat().st_mtime_ns) for path in paths}
    readable = [path for path, trace in traces.items() if trace is not None]
    if not readable:
        return None
    # the newest that fits, from the traces already parsed (engine.trace.lesson_trace does the same from disk)
    fitting = next((path for path in readable if not lesson_misfits(traces[path], hardware=hardware)), None)
    if st.session_state.get(key) not in readable:
        st.session_state[key] = fitting if fitting is not None else readable[0]

    def label(path: str) -> str:
        trace = traces[path]
        return f"{trace.created_at[:19].replace('T', ' ')} · {describe_settings(trace)} · {Path(path).stem}"

    chosen = st.selectbox(
        "Your run: the numbers on this page come from", readable, format_func=label, key=remember(key)
    )
    trace = traces[chosen]
    misfits = lesson_misfits(trace, hardware=hardware)
    summary = f"{trace.summary.new_tokens} tokens, {describe_settings(trace)}."
    if misfits:
        st.warning(f"This run does not fit the lesson: {'; '.join(misfits)}. Its numbers are shown as measured.")
    elif fitting is None:
        st.caption(summary)
    else:
        st.caption(f"The newest run recorded here that fits the lesson: {summary}")
    return trace
