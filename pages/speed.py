"""What makes it fast: the same prompt through every decode path, its speed under its ceiling, and its quality."""

from __future__ import annotations

import streamlit as st

from app import experiment_charts
from app.experiment_view import experiment_section, explained_charts, rows_table
from app.presentation import settings_area
from app.state import remember
from app.text import explanation, literal
from app.visitors import may_load_models
from engine.experiments.speed import SpeedOptions
from engine.facts import DECODE_PATHS
from engine.units import fmt_bytes

DEFAULTS = SpeedOptions()

st.title("⚡ What makes it fast")
st.markdown(explanation("speed", "intro"))

# Preparing a compiled path takes minutes of every core and keeps a copy of the model in the kitchen: on a hosted
# kitchen that is the presenter's call, like loading a model.
offered = list(DECODE_PATHS) if may_load_models() else ["eager"]
columns = settings_area("Options").columns([3, 1, 1])
paths = columns[0].multiselect(
    "Decode paths",
    offered,
    default=[name for name in DEFAULTS.paths if name in offered],
    key=remember("speed_paths"),
    help="Eager always runs: it is the yardstick. A compiled path takes minutes to prepare the first time.",
)
new_tokens = columns[1].number_input(
    "Tokens per path", 2, 256, DEFAULTS.new_tokens, key=remember("speed_new_tokens"), help="Greedy, end token ignored."
)
quality_tokens = columns[2].number_input(
    "Quality text (tokens)",
    2,
    300,
    DEFAULTS.quality_tokens,
    key=remember("speed_quality_tokens"),
    help="Next-token predictions compared with eager float32 (one fewer than the tokens).",
)
if len(offered) < len(DECODE_PATHS):
    st.caption("On this hosted kitchen only the presenter may prepare the compiled paths (minutes of work each).")
options = SpeedOptions(
    paths=tuple(paths) or ("eager",),
    new_tokens=int(new_tokens),
    quality_tokens=int(quality_tokens),
    llama_cpp=may_load_models(),  # another copy of the model, in llama.cpp: the presenter's call when hosted
)

result = experiment_section("speed", options, key="speed")
if result is None:
    st.stop()

details = result.details
bandwidth_gb_s = details["bandwidth_bytes_per_s"] / 1e9
st.caption(f"Ceiling: {bandwidth_gb_s:,.1f} GB/s measured now ({literal(details['bandwidth_method'])}).")
explained_charts(
    "speed",
    [("speed", experiment_charts.speed_chart(result)), ("quality", experiment_charts.quality_chart(result))],
    key="speed",
)
for name, reason in details["unavailable"].items():
    st.caption(f"**{name}** was not run: {literal(reason)}.")
matches = [
    f"{name}: {count} of {details.get('new_tokens', count)}"
    for name, count in details["greedy_match"].items()
    if name != "eager"
]
if matches:
    st.caption("Greedy answer tokens equal to eager's, from the first on: " + "; ".join(matches) + ".")
rows_table(
    result,
    {
        "path": "path",
        "dtype": "arithmetic in",
        "weights": "weights",
        "decode_tokens_per_s": "decode tokens/s",
        "ceiling_tokens_per_s": "ceiling tokens/s",
        "mbu": "mbu",
        "bytes_per_token": "bytes per token",
        "prefill_tokens_per_s": "prefill tokens/s",
        "prepare_s": "prepare (s)",
        "prepare_cache": "compile cache",
        "token_agreement": "same top token",
        "kl_divergence": "KL mean (nats)",
        "kl_divergence_p99": "KL p99",
        "kl_divergence_max": "KL max",
        "rms_delta_p": "RMS Δp",
    },
    formats={"bytes_per_token": fmt_bytes},
)
st.markdown(explanation("speed", "vendors"))
