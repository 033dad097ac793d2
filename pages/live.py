"""Live inference: type a prompt, press Generate, and watch a real model answer while every token's cost appears."""

from __future__ import annotations

import json
import os

import pandas as pd
import streamlit as st

from app.kitchen import GenerationJob, ModelSlot, current_session_id, require_ready_model
from app.presentation import settings_area
from app.run_view import draw_run_charts, run_html
from app.sidebar import current_selection
from app.text import explanation
from app.views import CHIP_STYLE, tokenizer_pieces
from engine import RULE_OF_THUMB_WORDS_PER_TOKEN, GenerationSettings, PromptError, check_prompt_text, split_into_tokens, summarize, words_per_token
from engine.settings import max_new_tokens_cap

# How often the page redraws from what has been recorded while a run is going. Every redraw costs CPU in the
# server and the browser, and on a small machine that CPU is taken from the model: keep them sparse.
TEXT_REDRAW_SECONDS = float(os.environ.get("INFERENCE_KITCHEN_TEXT_REDRAW_SECONDS", 0.5))
CHART_REDRAW_SECONDS = float(os.environ.get("INFERENCE_KITCHEN_CHART_REDRAW_SECONDS", 2.0))
DEFAULT_PROMPT = "What is the capital of France?"

st.html(CHIP_STYLE)
st.title("🔥 Live inference")
st.markdown(explanation("live", "intro"))

selection = current_selection()
slot: ModelSlot = require_ready_model(selection)
facts = slot.facts

# ---- the order: prompt and settings ------------------------------------------------------------------------
st.session_state.setdefault("live_prompt", DEFAULT_PROMPT)
job: GenerationJob | None = st.session_state.get("live_job")
busy = job is not None and job.active

prompt = st.text_area("Prompt", key="live_prompt", height=110, max_chars=facts.context_length * 8, disabled=busy)
columns = settings_area("Generation settings").columns(5)
max_new_tokens = columns[0].number_input("Max new tokens", min_value=1, max_value=max_new_tokens_cap(), value=64, key="live_max_new_tokens", disabled=busy)
temperature = columns[1].slider("Temperature (0 = greedy)", 0.0, 2.0, 0.0, 0.1, key="live_temperature", disabled=busy,
                                help="0 always picks the most likely token; higher values pick more adventurously.")
seed = columns[2].number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="live_seed", disabled=busy,
                               help="With temperature above 0, the same seed gives the same answer.")
kv_cache = columns[3].toggle("KV cache", value=True, key="live_kv_cache", disabled=busy,
                             help="Off: the model re-reads the whole conversation for every new token.")
chat_template = columns[4].toggle("Chat template", value=True, key="live_chat_template", disabled=busy,
                                  help="On: the prompt is wrapped as a chat turn (instruct models expect it). Off: raw text completion.")

buttons = st.columns([1, 1, 6])
if buttons[0].button("Generate", type="primary", disabled=busy, key="live_generate"):
    try:
        check_prompt_text(prompt)
    except PromptError as err:
        st.warning(f"Nothing to cook yet: {err}.")
        st.stop()
    settings = GenerationSettings(
        max_new_tokens=int(max_new_tokens), temperature=float(temperature), seed=int(seed), kv_cache=kv_cache, chat_template=chat_template
    )
    st.session_state["live_job"] = GenerationJob(prompt=prompt, settings=settings, session_id=current_session_id())
    slot.submit(st.session_state["live_job"])
    st.rerun()
if buttons[1].button("Stop", disabled=not busy, key="live_stop"):
    job.stop_pressed.set()

# ---- how the model reads the prompt --------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def tokenizer_view(model_key: str, text: str, _tokenizer: object) -> tuple[list, float | None]:
    """The prompt's token pieces and measured words per token (cached per model and text)."""
    pieces = split_into_tokens(_tokenizer, text)
    return pieces, words_per_token(text, len(pieces))


with st.expander("How the model reads your prompt (tokenizer view)", expanded=job is None):
    st.markdown(explanation("live", "tokenizer"))
    if prompt.strip():
        pieces, ratio = tokenizer_view(f"{facts.name}|{facts.source}", prompt, slot.tokenizer)
        st.html(tokenizer_pieces(pieces))
        cols = st.columns(3)
        cols[0].metric("tokens in your text", f"{len(pieces):,}")
        cols[1].metric("words per token, measured", f"{ratio:.2f}" if ratio is not None else "n/a")
        cols[2].metric("rule of thumb (seed article)", f"{RULE_OF_THUMB_WORDS_PER_TOKEN:.2f}",
                       delta=f"{ratio - RULE_OF_THUMB_WORDS_PER_TOKEN:+.2f} here" if ratio is not None else None, delta_color="off")
        if job is not None and job.request is not None and job.request.text == prompt and job.request.chat_template_applied:
            st.caption(f"With the chat template around it, the model actually read {len(job.request.token_ids):,} tokens.")


# ---- the run, drawn from what has been recorded -----------------------------------------------------------------


FINISHED_BY = {"eos": "the model (it said it was finished)", "length": "the max-new-tokens limit", "context": "a full context window"}


def draw_live_text(job: GenerationJob) -> bool:
    """Status, answer chips and headline numbers as one HTML element; True when there are records to chart."""
    if job.state == "queued":
        st.info(f"⏳ Waiting for the kitchen: {job.queue.ahead_of(job)} ahead of you. The model cooks one order at a time.")
        return False
    if job.state == "failed":
        st.error(f"**This run failed.** {job.error}")
        return False
    records, facts = list(job.records), job.facts  # a snapshot (the worker keeps appending); the model that ran it
    status = {
        "running": f"🍳 Cooking… {len(records)} tokens so far.",
        "stopped": f"⏹ Stopped after {len(records)} tokens.",
        "done": f"✅ Done: {len(records)} tokens, stopped by {FINISHED_BY.get(job.trace.finish_reason, '?') if job.trace else '?'}.",
    }[job.state]
    if not records or job.request is None or facts is None:
        st.html(f"<div class='ik-status'>{status}</div>")
        return False
    summary = job.trace.summary if job.trace else summarize(records, prompt_tokens=len(job.request.token_ids))
    st.html(run_html(records, model=facts.to_dict(), kv_cache=job.settings.kv_cache, summary=summary, status=status, rich=not job.active))
    return True


def draw_charts(job: GenerationJob) -> None:
    """The five charts from the records so far (costlier: redrawn less often while running)."""
    records = list(job.records)
    summary = job.trace.summary if job.trace else summarize(records, prompt_tokens=len(job.request.token_ids))
    draw_run_charts(records, model=job.facts.to_dict(), kv_cache=job.settings.kv_cache, prompt_tokens=len(job.request.token_ids),
                    summary=summary, key="live")


@st.cache_data(show_spinner=False, max_entries=16)
def trace_files(trace_key: str, _job: GenerationJob) -> tuple[bytes, bytes]:
    """The trace as JSON (the engine's format) and its per-token table as CSV."""
    trace = _job.trace
    table = pd.DataFrame([{**r.to_dict(), "top": " | ".join(f"{a.token!r} {a.prob:.4f}" for a in r.top)} for r in trace.events])
    return json.dumps(trace.to_dict(), ensure_ascii=False, indent=1).encode("utf-8"), table.to_csv(index=False).encode("utf-8")


def draw_downloads(job: GenerationJob) -> None:
    """Download buttons for the finished trace, and where it was saved."""
    stamp = job.trace.created_at.replace(":", "").replace("+0000", "")
    trace_json, table_csv = trace_files(f"{id(job)}-{job.trace.created_at}", job)
    cols = st.columns([1, 1, 3])
    cols[0].download_button("Download trace (JSON)", trace_json, file_name=f"trace-{stamp}.json", mime="application/json",
                            on_click="ignore", key="live_download_json")
    cols[1].download_button("Download tokens (CSV)", table_csv, file_name=f"tokens-{stamp}.csv", mime="text/csv",
                            on_click="ignore", key="live_download_csv")
    if job.saved_to is not None:
        cols[2].caption(f"Saved on the server as `{job.saved_to}`.")


st.divider()
if job is None:
    st.info("Press **Generate** to send the order to the kitchen.")
elif job.active:
    # Two fragments redraw from the records while the worker cooks: text often, charts less often.
    # Both only read what was recorded; nothing here runs inside the engine's timed region.

    @st.fragment(run_every=TEXT_REDRAW_SECONDS)
    def live_text() -> None:
        draw_live_text(job)
        st.caption(explanation("live", "chips"))
        if not job.active:
            st.rerun()  # one full redraw: final charts, re-enabled buttons, downloads

    @st.fragment(run_every=CHART_REDRAW_SECONDS)
    def live_charts() -> None:
        if job.state == "running" and job.records and job.request is not None and job.facts is not None:
            draw_charts(job)

    live_text()
    live_charts()
elif draw_live_text(job):
    st.caption(explanation("live", "chips"))
    draw_charts(job)
    if job.trace is not None:
        draw_downloads(job)
