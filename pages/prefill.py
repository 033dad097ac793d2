"""Prefill vs decode: read prompts of growing length and time both phases on this machine."""

from __future__ import annotations

import streamlit as st

from app import experiment_charts
from app.experiment_view import experiment_section, explained_charts, rows_table
from app.presentation import settings_area
from app.state import remember
from app.text import explanation
from engine.experiments.prefill import PrefillOptions

LENGTH_CHOICES = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
DEFAULTS = PrefillOptions()

st.title("📖 Prefill vs decode")
st.markdown(explanation("prefill", "intro"))

columns = settings_area("Options").columns([3, 1, 1])
lengths = columns[0].multiselect(
    "Prompt lengths (tokens)",
    LENGTH_CHOICES,
    default=list(DEFAULTS.prompt_lengths),
    key=remember("prefill_lengths"),
    help="Lengths beyond the model's context window are capped to it.",
)
repeats = columns[1].number_input(
    "Passes per length", 1, 20, DEFAULTS.repeats, key=remember("prefill_repeats"), help="The median pass is reported."
)
decode_tokens = columns[2].number_input(
    "Decode tokens",
    2,
    64,
    DEFAULTS.decode_tokens,
    key=remember("prefill_decode_tokens"),
    help="Tokens cooked after each prompt, to time one decode step at that context.",
)
options = PrefillOptions(prompt_lengths=tuple(sorted(lengths)), repeats=int(repeats), decode_tokens=int(decode_tokens))

result = experiment_section("prefill", options, key="prefill")
if result is None:
    st.stop()

explained_charts(
    "prefill",
    [("speed", experiment_charts.prefill_speed_chart(result)), ("time", experiment_charts.prefill_time_chart(result))],
    key="prefill",
)
if result.details.get("capped_lengths"):
    st.caption(
        f"Capped to the context window ({result.details['context_length']:,} tokens): "
        f"{result.details['capped_lengths']}."
    )
rows_table(
    result,
    {
        "prompt_tokens": "prompt tokens",
        "prefill_ms": "prefill (ms)",
        "prefill_tokens_per_s": "prefill tokens/s",
        "prefill_ms_per_token": "prefill ms per token",
        "itl_ms": "decode step (ms)",
        "decode_tokens_per_s": "decode tokens/s",
    },
)
