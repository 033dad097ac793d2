"""The restaurant: training vs inference explained, each claim beside a number measured on this machine."""

from __future__ import annotations

import streamlit as st

from app.experiment_view import latest_result, run_controls
from app.kitchen import GenerationJob, current_session_id, model_slot, show_load_progress
from app.sidebar import current_selection
from app.site import link
from app.text import explanation
from engine import GenerationSettings, split_into_tokens, words_per_token
from engine.experiments.train_vs_infer import TrainVsInferOptions
from engine.figures import TEN_SECONDS_MS
from engine.trace import latest_trace
from engine.units import fmt_bytes, fmt_ms, fmt_rate

SAMPLE_TEXT = "Inference is serving customers every night: cheap per plate, but it never stops."
COOK_PROMPT = "What is the capital of France?"

st.title("🧑‍🍳 The restaurant: training vs inference")
st.markdown(explanation("restaurant", "intro"))
trace = latest_trace()
train, prefill, kv, batch = (latest_result(name) for name in ("train-vs-infer", "prefill", "kv-cache", "batch"))


def cook_button() -> None:
    """Cook one short answer on the shared model, so the claims about serving have a measured run."""
    job: GenerationJob | None = st.session_state.get("restaurant_job")
    busy = job is not None and job.active
    if st.button("Run it: cook one answer now", type="primary", disabled=busy, key="restaurant_cook"):
        selection = current_selection()
        job = GenerationJob(prompt=COOK_PROMPT, settings=GenerationSettings(max_new_tokens=48), session_id=current_session_id())
        st.session_state["restaurant_job"] = job
        model_slot(selection.model, selection.device, selection.dtype).submit(job)
        st.rerun()
    if job is not None and job.active:

        @st.fragment(run_every=0.5)
        def cooking() -> None:
            slot = job.queue
            if job.state == "queued" and slot is not None and slot.state == "loading":
                show_load_progress(slot, doing="First loading")
            else:
                st.progress(min(len(job.records) / job.settings.max_new_tokens, 1.0), text=f"Cooking “{COOK_PROMPT}”: {len(job.records)} tokens")
            if not job.active:
                st.rerun()

        cooking()
    elif job is not None and job.state == "failed":
        st.error(f"**The run failed.** {job.error}")


# ---- training vs inference -------------------------------------------------------------------------------------
st.header("Training vs inference")
if train is not None:
    rows = {row["mode"]: row for row in train.rows}
    st.markdown(explanation(
        "restaurant", "training",
        tokens_train=rows["train"]["tokens"], train_time=fmt_ms(rows["train"]["time_ms"]), train_memory=fmt_bytes(rows["train"]["peak_memory_bytes"]),
        tokens_infer=rows["infer"]["tokens"], infer_time=fmt_ms(rows["infer"]["time_ms"]), infer_memory=fmt_bytes(rows["infer"]["peak_memory_bytes"]),
    ))
    cols = st.columns(2)
    cols[0].metric("training step: peak memory", fmt_bytes(rows["train"]["peak_memory_bytes"]),
                   delta=f"{rows['train']['peak_memory_bytes'] / rows['infer']['peak_memory_bytes']:.1f}x a request", delta_color="off")
    cols[1].metric("one request: peak memory", fmt_bytes(rows["infer"]["peak_memory_bytes"]))
    st.caption(f"Verdict from the same measurement: {train.details.get('verdict', train.finding)}")
    link("train-vs-infer", "Where the memory goes, and when serving needs more →")
else:
    st.markdown(explanation("restaurant", "training_none"))
    run_controls("train-vs-infer", TrainVsInferOptions(), key="restaurant_train")

# ---- the kitchen's words ---------------------------------------------------------------------------------------------
st.header("Reading the order, cooking one dish at a time")
decode = trace.summary if trace is not None and trace.summary.decode_tokens_per_s else None
if prefill is not None:
    longest = max(prefill.rows, key=lambda row: row["prompt_tokens"])
    st.markdown(explanation("restaurant", "prefill", prefill_rate=f"{longest['prefill_tokens_per_s']:,.0f}", prefill_tokens=f"{longest['prompt_tokens']:,}"))
elif trace is not None and trace.summary.prefill_tokens_per_s:
    st.markdown(explanation("restaurant", "prefill", prefill_rate=f"{trace.summary.prefill_tokens_per_s:,.0f}", prefill_tokens=f"{len(trace.prompt['tokens']):,}"))
else:
    link("prefill", "Reading the order: measure prefill vs decode →")
if decode is not None:
    reading = longest["prefill_tokens_per_s"] if prefill is not None else trace.summary.prefill_tokens_per_s
    st.markdown(explanation("restaurant", "decode", decode_rate=fmt_rate(decode.decode_tokens_per_s, "").strip(), itl=fmt_ms(decode.itl_p50_ms),
                            ratio=f"{reading / decode.decode_tokens_per_s:,.0f}x" if reading else "much"))
else:
    st.markdown(explanation("restaurant", "decode_none"))
    cook_button()

st.header("The prep station and the tables")
if kv is not None:
    st.markdown(explanation("restaurant", "kv", kv_bytes_per_token=kv.model["kv_bytes_per_token"], kv_finding=kv.finding))
else:
    st.markdown(explanation("restaurant", "kv_none"))
    link("kv-cache", "Measure the KV cache →")
if batch is not None:
    st.markdown(explanation("restaurant", "batch", batch_finding=batch.finding))
else:
    st.markdown(explanation("restaurant", "batch_none"))
    link("batch", "Measure batching →")

# ---- tokens and words -------------------------------------------------------------------------------------------------
st.header("Tokens, not words")
st.markdown(explanation("restaurant", "words"))
text = st.text_area("Your text", SAMPLE_TEXT, key="restaurant_text", max_chars=20_000, height=90)
selection = current_selection()
slot = model_slot(selection.model, selection.device, selection.dtype)
if not text.strip():
    st.info("Type some text to count its tokens.")
elif slot.state == "ready":
    pieces = split_into_tokens(slot.tokenizer, text)
    ratio = words_per_token(text, len(pieces))
    cols = st.columns(3)
    cols[0].metric("tokens in your text", f"{len(pieces):,}")
    cols[1].metric("words per token, measured", f"{ratio:.2f}" if ratio is not None else "n/a")
    cols[2].metric("the article's rule of thumb", "0.75")
elif slot.state == "failed":
    st.warning(f"The tokenizer comes with the model, which could not be loaded: {slot.error}")
else:

    @st.fragment(run_every=0.5)
    def waiting_for_tokenizer() -> None:
        show_load_progress(slot, doing="Loading the tokenizer of")
        if slot.state != "loading":
            st.rerun()

    waiting_for_tokenizer()

# ---- the ten-second rule --------------------------------------------------------------------------------------------------
st.header("The ten-second rule")
if trace is not None:
    st.markdown(explanation("restaurant", "budget", total=fmt_ms(trace.summary.total_ms), share=f"{trace.summary.total_ms / TEN_SECONDS_MS:.0%}"))
    st.progress(min(trace.summary.total_ms / TEN_SECONDS_MS, 1.0),
                text=f"{trace.summary.new_tokens} tokens in {fmt_ms(trace.summary.total_ms)} — “{trace.prompt['text'][:60]}”")
elif decode is None:
    st.caption("Cook one answer above to put it against the ten-second budget.")

st.header("What it costs")
st.markdown(explanation("restaurant", "costs"))
link("costs", "What it costs →")
