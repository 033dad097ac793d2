"""The restaurant page's sections: each claim drawn beside the number measured on this machine (or a way to measure it).

Every sentence that judges (which costs more, how much slower) comes from the engine, computed from the numbers it
is shown with.
"""

from __future__ import annotations

import streamlit as st

from app.experiment_view import run_controls
from app.kitchen import GenerationJob, Selection, model_slot, open_slot
from app.site import link
from app.state import remember
from app.text import explanation, literal
from app.views import token_count_metrics
from app.watching import redraw_while, show_load_progress, show_waiting, submit_job
from engine import GenerationSettings, Trace
from engine.experiments.result import ExperimentResult
from engine.experiments.train_vs_infer import TrainVsInferOptions, compare_per_request
from engine.figures import TEN_SECONDS_MS
from engine.tokens import read_text
from engine.units import fmt_bytes, fmt_ms, fmt_rate

COOK_PROMPT = "What is the capital of France?"
REDRAW_SECONDS = 0.5


def cook_button() -> None:
    """Cook one short answer on the shared model, so the claims about serving have a measured run."""
    job: GenerationJob | None = st.session_state.get("restaurant_job")
    busy = job is not None and job.active
    if st.button("Run it: cook one answer now", type="primary", disabled=busy, key="restaurant_cook"):
        submit_job(
            GenerationJob(prompt=COOK_PROMPT, settings=GenerationSettings(max_new_tokens=48)), key="restaurant_job"
        )
    if job is not None and job.active:

        def cooking() -> None:
            if not show_waiting(job):
                fraction = min(len(job.records) / job.settings.max_new_tokens, 1.0)
                st.progress(fraction, text=f"Cooking “{COOK_PROMPT}”: {len(job.records)} tokens")

        redraw_while(lambda: job.active, cooking, every=REDRAW_SECONDS)
    elif job is not None and job.state == "failed":
        st.error(f"**The run failed.** {literal(job.error)}")


def training_section(train: ExperimentResult | None) -> None:
    """Training vs serving one request: time and memory, with the comparison computed from them."""
    if train is None:
        st.markdown(explanation("restaurant", "training_none"))
        run_controls("train-vs-infer", TrainVsInferOptions(), key="restaurant_train")
        return
    rows = {row["mode"]: row for row in train.rows}
    infer, training = rows["infer"], rows["train"]
    st.markdown(
        explanation(
            "restaurant", "training", comparison=compare_per_request(infer, training),
            tokens_train=training["tokens"], train_time=fmt_ms(training["time_ms"]),
            train_memory=fmt_bytes(training["peak_memory_bytes"]), tokens_infer=infer["tokens"],
            infer_time=fmt_ms(infer["time_ms"]), infer_memory=fmt_bytes(infer["peak_memory_bytes"]),
        )
    )  # fmt: skip
    columns = st.columns(2)
    ratio = training["peak_memory_bytes"] / infer["peak_memory_bytes"]
    columns[0].metric(
        "training step: peak memory", fmt_bytes(training["peak_memory_bytes"]), delta=f"{ratio:.1f}x a request",
        delta_color="off",
    )  # fmt: skip
    columns[1].metric("one request: peak memory", fmt_bytes(infer["peak_memory_bytes"]))
    st.caption(f"Verdict from the same measurement: {literal(train.details.get('verdict', train.finding))}")
    link("train-vs-infer", "Where the memory goes, and when serving needs more →")


def reading_and_cooking(prefill: ExperimentResult | None, trace: Trace | None) -> None:
    """Prefill's rate (from the prefill experiment, else the latest run) against the latest run's decode rate."""
    reading = None
    if prefill is not None:
        longest = max(prefill.rows, key=lambda row: row["prompt_tokens"])
        reading, tokens = longest["prefill_tokens_per_s"], longest["prompt_tokens"]
    elif trace is not None and trace.summary.prefill_tokens_per_s:
        reading, tokens = trace.summary.prefill_tokens_per_s, len(trace.prompt["tokens"])
    if reading is not None:
        st.markdown(explanation("restaurant", "prefill", prefill_rate=f"{reading:,.0f}", prefill_tokens=f"{tokens:,}"))
    else:
        link("prefill", "Reading the order: measure prefill vs decode →")
    decode = trace.summary if trace is not None and trace.summary.decode_tokens_per_s else None
    if decode is None:
        st.markdown(explanation("restaurant", "decode_none"))
        cook_button()
        return
    ratio = f"{reading / decode.decode_tokens_per_s:,.0f}x" if reading else "much"
    rate = fmt_rate(decode.decode_tokens_per_s, "").strip()
    st.markdown(explanation("restaurant", "decode", decode_rate=rate, itl=fmt_ms(decode.itl_p50_ms), ratio=ratio))


def finding_or_link(result: ExperimentResult | None, *, section: str, page: str, label: str, **numbers: object) -> None:
    """An experiment's finding in its section's words, or a link to measure it."""
    if result is None:
        st.markdown(explanation("restaurant", f"{section}_none"))
        link(page, label)
    else:
        st.markdown(explanation("restaurant", section, **numbers))


def tokens_section(selection: Selection, *, sample: str) -> None:
    """The visitor's own text (`sample` at first), counted by the selected model's tokenizer."""
    text = st.text_area("Your text", sample, key=remember("restaurant_text"), max_chars=20_000, height=90)
    slot = open_slot(selection)
    if slot is None:
        st.caption(f"The tokenizer comes with the model, which is not loaded yet ({literal(selection.model)}).")
        if st.button("Load the model to count tokens", key="restaurant_load"):
            model_slot(selection.model, selection.device, selection.dtype)
            st.rerun()
    elif not text.strip():
        st.info("Type some text to count its tokens.")
    elif slot.state == "ready":
        token_count_metrics(read_text(slot.tokenizer, text))
    elif slot.state == "failed":
        st.warning(f"The tokenizer comes with the model, which could not be loaded: {literal(slot.error)}")
    else:
        show = lambda: show_load_progress(slot, doing="Loading the tokenizer of")  # noqa: E731
        redraw_while(lambda: slot.state == "loading", show, every=REDRAW_SECONDS)


def budget_section(trace: Trace | None) -> None:
    """The latest answer against the ten-second budget."""
    if trace is None:
        st.caption("Cook one answer above to put it against the ten-second budget.")
        return
    total = trace.summary.total_ms
    st.markdown(explanation("restaurant", "budget", total=fmt_ms(total), share=f"{total / TEN_SECONDS_MS:.0%}"))
    st.progress(min(total / TEN_SECONDS_MS, 1.0), text=f"{trace.summary.new_tokens} tokens in {fmt_ms(total)}")
