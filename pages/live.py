"""Live inference: type a prompt, press Generate, and watch a real model answer while every token's cost appears."""

from __future__ import annotations

import streamlit as st

from app.hosting import check_new_tokens_allowed
from app.kitchen import GenerationJob
from app.kitchen_view import draw_kitchen, draw_kitchen_live
from app.live_view import (
    CHART_REDRAW_SECONDS,
    TEXT_REDRAW_SECONDS,
    draw_charts,
    draw_downloads,
    draw_live_text,
    draw_tokenizer_view,
    path_caption,
    path_input,
    settings_inputs,
)
from app.remote_kitchen import RemoteJob, current_server, server_caption
from app.run_view import draw_server_metrics
from app.sidebar import current_selection
from app.state import remember
from app.text import explanation, literal
from app.views import chip_style
from app.watching import model_loading_or_ready, redraw_while, show_waiting, submit_job
from engine import PromptError, SettingsError, check_prompt_text
from engine.remote import RemoteError

DEFAULT_PROMPT = "What is the capital of France?"
PROMPT_MAX_CHARS = 65_536  # the box's limit; the engine refuses, with a sentence, a prompt longer than the model reads

chip_style()
st.title("🔥 Live inference")
server = current_server()  # None: this machine's model cooks; else an OpenAI-compatible server (the sidebar)
st.markdown(explanation("live", "intro" if server is None else "intro_server"))
slot = model_loading_or_ready(current_selection()) if server is None else None  # the prompt box shows meanwhile
job: GenerationJob | None = st.session_state.get("live_job")
busy = job is not None and job.active

# ---- the order: prompt and settings ------------------------------------------------------------------------------
# The inputs stay enabled while the kitchen cooks: a widget that turns disabled in the run right after a click can
# lose the text typed just before that click (the browser shows, and sends back, its previous value). Only the
# buttons follow the job; the run keeps the settings it was sent with, and the status line names its prompt.
# The default goes in `value`, not in session state before the widget: a first run cut short by a rerun left the
# browser showing an empty box over a state that held the default (seen in the presenter's walk).
prompt = st.text_area("Prompt", DEFAULT_PROMPT, key=remember("live_prompt"), height=110, max_chars=PROMPT_MAX_CHARS)
settings = settings_inputs()
path = path_input() if server is None else "eager"
if server is not None:
    st.caption(literal(server_caption(server)))
buttons = st.columns([1, 1, 6])
if buttons[0].button("Generate", type="primary", disabled=busy, key="live_generate"):
    try:
        check_prompt_text(prompt)
        check_new_tokens_allowed(settings.max_new_tokens)
        if server is not None:
            server.check()
    except (PromptError, SettingsError, RemoteError) as err:
        st.warning(f"Nothing to cook yet: {literal(err)}.")
        st.stop()
    if server is None:
        submit_job(GenerationJob(prompt=prompt, settings=settings, path=path), key="live_job")
    else:
        submit_job(RemoteJob(prompt=prompt, settings=settings, server=server), key="live_job")
if buttons[1].button("Stop", disabled=not busy, key="live_stop"):
    job.stop_pressed.set()

with st.expander("How the model reads your prompt (tokenizer view)", expanded=job is None):
    st.markdown(explanation("live", "tokenizer"))
    if slot is None:
        st.caption("A server reads the prompt with its own tokenizer, which a client does not see.")
    elif slot.state != "ready":
        st.caption("The tokenizer comes with the model: it shows here once the model has loaded.")
    elif prompt.strip():
        model_key = f"{slot.facts.name}|{slot.facts.source}"
        draw_tokenizer_view(prompt, model_key=model_key, tokenizer=slot.tokenizer, job=job)

# ---- the run, drawn from what has been recorded ------------------------------------------------------------------
st.divider()
if job is None:
    st.info("Press **Generate** to send the order to the kitchen.")
    st.stop()
if job.prompt != prompt:
    st.text(f"Answering: “{job.prompt[:200]}”")  # the visitor's text, shown as text
if job.active:
    # Two fragments redraw from the records while the worker cooks: text often, charts less often.
    def live_text() -> None:
        if not show_waiting(job) and draw_live_text(job):
            st.caption(explanation("live", "chips"))

    def live_charts() -> None:
        if job.state == "running" and job.records and job.request is not None and job.facts is not None:
            draw_charts(job)

    redraw_while(lambda: job.active, live_text, every=TEXT_REDRAW_SECONDS)
    redraw_while(lambda: job.active, live_charts, every=CHART_REDRAW_SECONDS)
elif draw_live_text(job):
    st.caption(explanation("live", "chips"))
    if job.trace is not None and (said := path_caption(job.trace)):
        st.caption(said)
    draw_charts(job)
    if job.trace is not None:
        draw_server_metrics(job.trace, key="live")
        draw_downloads(job)

# ---- the kitchen: everyone's requests, anonymous ------------------------------------------------------------------
st.divider()
if (
    slot is not None
    and slot.state == "ready"
    and st.toggle("Show the kitchen: every visitor's requests, batched", key=remember("live_show_kitchen"))
):
    if job.active:
        draw_kitchen_live(slot, mine=job.table, key="live_kitchen", while_active=lambda: job.active)
    else:
        st.caption(explanation("kitchen", "panel"))
        draw_kitchen(slot, mine=job.table, key="live_kitchen")
