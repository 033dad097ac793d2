"""The memory wall: this machine's bandwidth and matmul peak, and each weight format's decode under its ceiling."""

from __future__ import annotations

import streamlit as st

from app import experiment_charts
from app.experiment_view import experiment_section, explained_charts, rows_table
from app.presentation import settings_area
from app.state import remember
from app.text import explanation, literal
from app.visitors import may_load_models
from engine.experiments.roofline import RooflineOptions
from engine.facts import DECODE_PATHS
from engine.units import fmt_bytes

DEFAULTS = RooflineOptions()

st.title("🧱 The memory wall: roofline and bandwidth")
st.markdown(explanation("roofline", "intro"))

area = settings_area("Options")
columns = area.columns(5)
repeats = columns[0].number_input(
    "Repeats", 1, 50, DEFAULTS.repeats, key=remember("roofline_repeats"), help="Best of these is the machine's peak."
)
bandwidth_mb = columns[1].number_input(
    "Bandwidth tensor (MB)",
    16,
    8192,
    DEFAULTS.bandwidth_mb,
    key=remember("roofline_bandwidth_mb"),
    help="Far larger than the CPU caches, so the read comes from main memory.",
)
decode_tokens = columns[2].number_input(
    "Decode steps per format", 2, 256, DEFAULTS.decode_tokens, key=remember("roofline_decode_tokens")
)
prefill_tokens = columns[3].number_input(
    "Prefill tokens (MFU)", 1, 4096, DEFAULTS.prefill_tokens, key=remember("roofline_prefill_tokens")
)
include_int8 = columns[4].toggle(
    "Try int8 weights",
    DEFAULTS.include_int8,
    key=remember("roofline_include_int8"),
    help="Weight-only int8 with one scale per row, where the device has a kernel for it.",
)
# A compiled path takes minutes of every core to prepare: on a hosted kitchen, the presenter's call (as on Speed)
compiled_paths = [name for name in DECODE_PATHS if name != "eager"] if may_load_models() else []
paths = area.multiselect(
    "Compiled decode paths too (see 'What makes it fast')",
    compiled_paths,
    default=[],
    key=remember("roofline_paths"),
    help="Each is prepared first: minutes the first time, seconds once its compile cache is on disk.",
    disabled=not compiled_paths,
)
options = RooflineOptions(
    repeats=int(repeats),
    bandwidth_mb=int(bandwidth_mb),
    decode_tokens=int(decode_tokens),
    prefill_tokens=int(prefill_tokens),
    include_int8=include_int8,
    paths=tuple(paths),
)

result = experiment_section("roofline", options, key="roofline")
if result is None:
    st.stop()

details = result.details
st.markdown(explanation("roofline", "machine"))
cards = st.columns(3)
cards[0].metric(
    "memory bandwidth (read)",
    f"{details['bandwidth_bytes_per_s'] / 1e9:,.1f} GB/s",
    help=f"Method: {details['bandwidth_method']}. Median {details['bandwidth_median_bytes_per_s'] / 1e9:,.1f} GB/s; "
    f"a copy (read + write) moved {details['copy_bytes_per_s'] / 1e9:,.1f} GB/s.",
)
for column, (dtype, flops) in zip(cards[1:], list(details["peak_flops_by_dtype"].items())[:2], strict=False):
    column.metric(f"matmul peak, {dtype}", f"{flops / 1e9:,.0f} GFLOP/s", help=f"Method: {details['flops_method']}.")
st.caption(f"Bandwidth: {literal(details['bandwidth_method'])}. FLOP/s: {literal(details['flops_method'])}.")

explained_charts(
    "roofline",
    [
        ("roofline", experiment_charts.roofline_chart(result)),
        ("utilization", experiment_charts.utilization_chart(result)),
    ],
    key="roofline",
)
for note in details.get("peak_flops_notes", {}).values():
    st.caption(f"Peak FLOP/s, {note}.")
for dtype, reason in details.get("skipped", {}).items():
    st.caption(f"{dtype} was not measured: {reason}.")
rows_table(
    result,
    {
        "dtype": "dtype",
        "compute_dtype": "arithmetic in",
        "bytes_per_token": "bytes per token",
        "decode_tokens_per_s": "decode tokens/s",
        "ceiling_tokens_per_s": "ceiling tokens/s",
        "mbu": "mbu",
        "step_ms": "step (ms)",
        "read_ms": "reading the bytes (ms)",
        "overhead_ms": "overhead (ms)",
        "prefill_ms": "prefill (ms)",
        "mfu": "mfu",
    },
    formats={"bytes_per_token": fmt_bytes},
)
