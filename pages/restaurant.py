"""The restaurant: training vs inference explained, each claim beside a number measured on this machine."""

from __future__ import annotations

import streamlit as st

from app.experiment_view import latest_result
from app.restaurant_view import budget_section, finding_or_link, reading_and_cooking, tokens_section, training_section
from app.sidebar import current_selection
from app.site import link
from app.text import explanation
from app.your_run import your_run

SAMPLE_TEXT = "Inference is serving customers every night: cheap per plate, but it never stops."

st.title("🧑‍🍳 The restaurant: training vs inference")
st.markdown(explanation("restaurant", "intro"))
trace = your_run(key="restaurant_your_run")
train, prefill, kv, batch = (latest_result(name) for name in ("train-vs-infer", "prefill", "kv-cache", "batch"))

st.header("Training vs inference")
training_section(train)

st.header("Reading the order, cooking one dish at a time")
reading_and_cooking(prefill, trace)

st.header("The prep station and the tables")
kv_numbers = {"kv_bytes_per_token": kv.model["kv_bytes_per_token"], "kv_finding": kv.finding} if kv else {}
finding_or_link(kv, section="kv", page="kv-cache", label="Measure the KV cache →", **kv_numbers)
finding_or_link(
    batch,
    section="batch",
    page="batch",
    label="Measure batching →",
    **({"batch_finding": batch.finding} if batch else {}),
)

st.header("Tokens, not words")
st.markdown(explanation("restaurant", "words"))
tokens_section(current_selection(), sample=SAMPLE_TEXT)

st.header("The ten-second rule")
budget_section(trace)

st.header("What it costs")
st.markdown(explanation("restaurant", "costs"))
link("costs", "What it costs →")
