"""Training vs inference: one real training step against one real request, and the memory projection."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import experiment_charts
from app.experiment_view import experiment_section
from app.presentation import settings_area, show_chart
from app.state import remember
from app.text import explanation, literal
from engine.experiments.train_vs_infer import TrainVsInferOptions
from engine.units import fmt_bytes, fmt_ms

DEFAULTS = TrainVsInferOptions()

st.title("🎓 Training vs inference")
st.markdown(explanation("train_vs_infer", "intro"))

columns = settings_area("Options").columns([1, 2, 1, 1])
train_tokens = columns[0].number_input(
    "Training batch (tokens)", 8, 4096, DEFAULTS.train_tokens, key=remember("train_vs_infer_train_tokens")
)
prompt = columns[1].text_input("Request prompt", DEFAULTS.prompt, key=remember("train_vs_infer_prompt"), max_chars=2000)
new_tokens = columns[2].number_input(
    "Request's new tokens", 1, 512, DEFAULTS.new_tokens, key=remember("train_vs_infer_new_tokens")
)
context_tokens = columns[3].number_input(
    "Context per user",
    128,
    131072,
    DEFAULTS.context_tokens,
    key=remember("train_vs_infer_context_tokens"),
    help="Tokens each concurrent user holds in the KV cache, for the projection.",
)
if not prompt.strip():
    st.warning("Type a prompt for the inference request.")
    st.stop()
options = TrainVsInferOptions(
    train_tokens=int(train_tokens), prompt=prompt, new_tokens=int(new_tokens), context_tokens=int(context_tokens)
)

result = experiment_section("train-vs-infer", options, key="train_vs_infer")
if result is None:
    st.stop()

rows = {row["mode"]: row for row in result.rows}
infer, train = rows["infer"], rows["train"]
cards = st.columns(4)
cards[0].metric("training step: peak memory", fmt_bytes(train["peak_memory_bytes"]))
cards[1].metric(
    "one request: peak memory",
    fmt_bytes(infer["peak_memory_bytes"]),
    delta=f"training needs {train['peak_memory_bytes'] / infer['peak_memory_bytes']:.1f}x",
    delta_color="off",
)
cards[2].metric(
    "training step: time", fmt_ms(train["time_ms"]), help=f"Forward + backward + AdamW on {train['tokens']} tokens."
)
cards[3].metric(
    "one request: time", fmt_ms(infer["time_ms"]), help=f"{infer['tokens']} tokens read and written, KV cache on."
)

st.markdown(explanation("train_vs_infer", "memory"))
show_chart(experiment_charts.memory_breakdown_chart(result), key="train_vs_infer_chart_memory")
st.caption(f"Peak memory: {literal(train['memory_method'])}.")

here, details = result.details["this_model"], result.details
st.markdown(explanation("train_vs_infer", "projection"))
crossing = here["users_to_exceed_training"]
show_chart(
    experiment_charts.projection_chart(result, max_users=max(10, int(crossing * 1.5))),
    key="train_vs_infer_chart_projection",
)
st.caption(f"Formula: {literal(details['formula'])}.")
published = pd.DataFrame(
    [
        {
            "model": m["name"],
            "parameters (B)": m["parameters"] / 1e9,
            "KV per user": fmt_bytes(m["kv_bytes_per_user"]),
            "training ≥": fmt_bytes(m["training_bytes"]),
            "served weights": fmt_bytes(m["serving_weights_bytes"]),
            "users before serving > training": m["users_to_exceed_training"],
            "source": m["source"],
        }
        for m in details["published_models"]
    ]
)
published.loc[-1] = {
    "model": f"{here['name']} (measured here)",
    "parameters (B)": result.model["parameters"] / 1e9,
    "KV per user": fmt_bytes(here["kv_bytes_per_user"]),
    "training ≥": fmt_bytes(here["training_bytes"]),
    "served weights": fmt_bytes(here["serving_base_bytes"]),
    "users before serving > training": crossing,
    "source": "measured on this machine (served = one request's peak without its KV cache)",
}
st.dataframe(published.sort_index(), hide_index=True)

st.markdown(explanation("train_vs_infer", "verdict", verdict=result.details.get("verdict", result.finding)))
