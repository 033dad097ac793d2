"""With and without the KV cache: the same greedy answer twice, per-token latency side by side."""

from __future__ import annotations

import streamlit as st

from app import experiment_charts
from app.experiment_view import experiment_section, explained_charts
from app.presentation import settings_area
from app.state import remember
from app.text import explanation
from engine.experiments.kv_cache import KvCacheOptions, decode_latencies, edge_means
from engine.settings import max_new_tokens_cap
from engine.units import fmt_bytes, fmt_ms

DEFAULTS = KvCacheOptions()

st.title("🧂 With and without the KV cache")
st.markdown(explanation("kv_cache", "intro"))

columns = settings_area("Options").columns([3, 1])
prompt = columns[0].text_input(
    "Prompt (the same for both runs)", DEFAULTS.prompt, key=remember("kv_cache_prompt"), max_chars=2000
)
new_tokens = columns[1].number_input(
    "New tokens",
    2,
    min(512, max_new_tokens_cap()),
    DEFAULTS.new_tokens,
    key=remember("kv_cache_new_tokens"),
    help="Both runs make exactly this many tokens. Without the cache the time grows with the square of it.",
)
if not prompt.strip():
    st.warning("Type a prompt to cook: both runs need the same order.")
    st.stop()
options = KvCacheOptions(prompt=prompt, new_tokens=int(new_tokens))

result = experiment_section("kv-cache", options, key="kv_cache")
if result is None:
    st.stop()

runs = result.details["runs"]
with_cache, without = (
    decode_latencies(list(result.rows), kv_cache=True),
    decode_latencies(list(result.rows), kv_cache=False),
)
cards = st.columns(4)
cards[0].metric("total time, with the cache", fmt_ms(runs["on"]["total_ms"]))
cards[1].metric(
    "total time, without",
    fmt_ms(runs["off"]["total_ms"]),
    delta=f"{runs['off']['total_ms'] / runs['on']['total_ms']:.1f}x longer",
    delta_color="inverse",
)
if without:
    start, end = edge_means(without)
    cards[2].metric("per-token time without, first → last tenth", f"{start:,.0f} → {end:,.0f} ms")
cards[3].metric("KV cache held at the end", fmt_bytes(runs["on"]["kv_cache_bytes"]))
st.caption(
    "Both runs produced the same tokens ✓"
    if result.details["same_tokens"]
    else "The two runs' tokens differ (see the note below)."
)
explained_charts(
    "kv_cache",
    [("latency", experiment_charts.kv_latency_chart(result)), ("time", experiment_charts.kv_time_chart(result))],
    key="kv_cache",
)
st.markdown(explanation("kv_cache", "bytes", kv_bytes_per_token=result.model["kv_bytes_per_token"]))
if not result.details["same_tokens"]:
    st.caption(
        "The two runs chose different tokens somewhere: the two paths add the same numbers in a different order, and a "
        "near-tie between two tokens can fall either way. The timing comparison still holds."
    )
