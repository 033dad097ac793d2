"""Batching: aggregate tokens/s against each user's wait, and how many users fit the ten-second budget."""

from __future__ import annotations

import time

import streamlit as st

from app import experiment_charts
from app.experiment_view import experiment_section, rows_table
from app.presentation import settings_area, show_chart
from app.server_sweep_view import server_section
from app.sidebar import current_selection
from app.site import link
from app.state import remember
from app.text import explanation, literal
from app.watching import kitchen_steps
from engine.experiments.batch import BatchOptions
from engine.experiments.result import ExperimentResult
from engine.schedule import kitchen_now, traffic_vs_sweep
from engine.units import fmt_bytes

BATCH_CHOICES = [1, 2, 4, 8, 16, 32, 64]
DEFAULTS = BatchOptions()


def traffic_sentence(result: ExperimentResult) -> str:
    """The kitchen's last minute (the selected model's slot, if loaded) against this sweep."""
    steps = kitchen_steps(current_selection())
    return traffic_vs_sweep(kitchen_now(steps, now_s=time.time()), result.rows)


st.title("🍽️ Batching: throughput vs latency")
st.markdown(explanation("batch", "intro"))

columns = settings_area("Options").columns([3, 1, 1, 1, 1])
sizes = columns[0].multiselect(
    "Batch sizes",
    BATCH_CHOICES,
    default=list(DEFAULTS.batch_sizes),
    key=remember("batch_sizes"),
    help="The run stops early when a batch's KV cache would not fit in memory.",
)
prompt_tokens = columns[1].number_input(
    "Prompt tokens", 1, 2048, DEFAULTS.prompt_tokens, key=remember("batch_prompt_tokens")
)
decode_tokens = columns[2].number_input(
    "Decode steps", 1, 128, DEFAULTS.decode_tokens, key=remember("batch_decode_tokens")
)
budget_s = columns[3].number_input(
    "Budget (s)",
    0.5,
    120.0,
    DEFAULTS.budget_s,
    0.5,
    key=remember("batch_budget_s"),
    help="How long a user waits for a whole answer before giving up (the seed article: about 10 s).",
)
answer_tokens = columns[4].number_input(
    "Answer tokens",
    1,
    8192,
    DEFAULTS.answer_tokens,
    key=remember("batch_answer_tokens"),
    help="A typical answer's length, for the serving question.",
)
options = BatchOptions(
    batch_sizes=tuple(sorted(sizes)),
    prompt_tokens=int(prompt_tokens),
    decode_tokens=int(decode_tokens),
    budget_s=float(budget_s),
    answer_tokens=int(answer_tokens),
)

result = experiment_section("batch", options, key="batch")
if result is None:
    server_section(None)
    st.stop()

st.markdown(f"**Today's traffic.** {traffic_sentence(result)}")
link("kitchen", "Watch the kitchen batch this room's requests live")

st.markdown(explanation("batch", "curve"))
show_chart(experiment_charts.batch_chart(result), key="batch_chart_curve")
if result.details.get("stopped_early"):
    st.warning(f"Stopped early: {literal(result.details['stopped_early'])}.")
serving = result.details["serving"]
st.markdown(explanation("batch", "serving"))
left, right = st.columns([2, 1])
with left:
    show_chart(experiment_charts.answer_time_chart(result, budget_s=serving["budget_s"]), key="batch_chart_answer")
with right:
    st.metric(
        "users served at once within the budget",
        f"{serving['users']}"
        + (" or more" if serving["users"] and serving["users"] == serving["largest_measured"] else ""),
    )
    st.metric(
        "their KV caches together",
        fmt_bytes(serving["kv_bytes_all_users"]),
        help=f"{serving['users']} × ({result.details['prompt_tokens']} prompt + {serving['answer_tokens']} answer "
        f"tokens) × {result.model['kv_bytes_per_token']:,} B per token",
    )
    st.metric("KV cache per user", fmt_bytes(serving["kv_bytes_per_user"]))
    st.caption(
        f"Answer time = prefill + ({serving['answer_tokens']} − 1) × wait per token, from the measured batch; "
        f"budget {serving['budget_s']:g} s."
    )
rows_table(
    result,
    {
        "batch_size": "batch",
        "tokens_per_s": "tokens/s (all users)",
        "itl_ms": "wait per token (ms)",
        "per_user_tokens_per_s": "tokens/s per user",
        "prefill_ms": "prefill (ms)",
        "kv_cache_bytes": "KV cache (bytes)",
        "answer_s": "answer time (s)",
        "within_budget": "within budget",
    },
)

server_section(result)  # the same question asked of the team's own server (app.server_sweep_view)
