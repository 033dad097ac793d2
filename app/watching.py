"""Send a job to the kitchen and watch it: the one pattern every page that runs something shares.

A page submits a job (a generation or an experiment) to the selected model's slot, then redraws from what the
job has recorded in a fragment that reruns every so often; when the job ends, one full rerun draws the final
state. Nothing here runs inside the engine's timed region: the worker process cooks, the page only reads.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app.hosting import prompt_tokens_limit, requests_per_visitor, seconds_per_request
from app.kitchen import GenerationJob, Job, ModelSlot, Selection, current_session_id, model_slot, open_slot, reload_slot
from app.remote_kitchen import SERVER_JOBS
from app.sidebar import current_selection
from app.text import literal
from app.visitors import visitor_id
from engine import DEFAULT_MODEL
from engine.steps import StepInfo

LOAD_REDRAW_SECONDS = 0.5


ONE_AT_A_TIME = (
    "You already have an order in the kitchen: one at a time per visitor, so everyone in the room gets served. "
    "Stop it or wait for it to finish, then press the button again."
)


def active_jobs_of_this_visitor() -> list[Job]:
    """This browser session's jobs that are still queued or cooking, on any page."""
    return [value for value in st.session_state.values() if isinstance(value, Job) and value.active]


def submit_job(job: Job, *, key: str) -> None:
    """Queue a job on the selected model, remember it as this visitor's `key`, and redraw the page.

    One active job per visitor (hosted mode: the configured number): one more while they are queued or cooking is
    refused with a message.
    """
    active, limit = len(active_jobs_of_this_visitor()), requests_per_visitor()
    if active >= limit:
        st.warning(
            ONE_AT_A_TIME
            if limit == 1
            else f"You already have {active} orders in the kitchen, this kitchen's limit per visitor. "
            "Stop one or wait for one to finish, then press the button again."
        )
        st.stop()
    job.session_id, job.owner, job.seconds_cap = current_session_id(), visitor_id(), seconds_per_request()
    if isinstance(job, GenerationJob):
        job.prompt_tokens_cap = prompt_tokens_limit()
    st.session_state[key] = job
    if isinstance(job, SERVER_JOBS):  # a server cooks it: streamed on its own thread, the local model untouched
        job.start()
    else:
        selection = current_selection()
        model_slot(selection.model, selection.device, selection.dtype).submit(job)
    st.rerun()


def redraw_while(active: Callable[[], bool], draw: Callable[[], None], *, every: float) -> None:
    """Draw now and every `every` seconds while `active()` holds; once it turns false, redraw the whole page once."""

    @st.fragment(run_every=every)
    def region() -> None:
        draw()
        if not active():
            st.rerun()

    region()


def show_load_progress(slot: ModelSlot, *, doing: str = "Loading") -> None:
    """The slot's real loading progress as a bar (e.g. 'Loading SmolLM2-135M-Instruct first: …')."""
    st.progress(min(max(slot.progress.fraction, 0.0), 1.0), text=f"{doing} {slot.name}: {slot.progress.message}")


def show_waiting(job: Job) -> bool:
    """While a job waits (model loading, or no room in the batch yet), say so; True when something was shown."""
    if job.slot is None or not job.active:
        return False
    if job.state == "queued" and job.slot.state == "loading":
        show_load_progress(job.slot, doing="First loading")
        return True
    preparing = job.path_progress if isinstance(job, GenerationJob) else None
    if preparing:  # a compiled decode path is being prepared (engine.paths): minutes the first time
        st.info(
            f"⚙️ {literal(preparing)}. Compiling takes minutes the first time and seconds once its cache is on "
            "disk; everyone else's requests keep cooking meanwhile, and yours starts as soon as it is ready."
        )
        return True
    place = job.queue_place
    if place is None:
        return False
    wait = (
        f"about {place.wait_s:,.0f} s (estimated from the kitchen's measured step times)"
        if place.wait_s
        else ("not known yet (an experiment has the model to itself, or no step has been timed)")
    )
    st.info(
        f"⏳ The kitchen's batch is full: you are **number {place.place}** in the queue for a place at the cooker "
        f"({job.slot.ahead_of(job)} ahead of you). Wait: {wait}."
    )
    return True


def model_loading_or_ready(selection: Selection) -> ModelSlot:
    """The selected model's slot, loading or ready; a failed load shows its error and stops the page.

    While it loads, its real progress is shown (and the page redrawn once it is ready); the caller may draw its
    inputs meanwhile, so a visitor can type and press a button before the model is there (the job waits for it).
    """
    slot = model_slot(selection.model, selection.device, selection.dtype)
    if slot.state == "failed":
        return require_ready_model(selection)
    if slot.state == "loading":
        redraw_while(lambda: slot.state == "loading", lambda: show_load_progress(slot), every=LOAD_REDRAW_SECONDS)
    return slot


def require_ready_model(selection: Selection) -> ModelSlot:
    """The selected model's slot once it is ready; meanwhile show real loading progress (or the error) and stop."""
    slot = model_slot(selection.model, selection.device, selection.dtype)
    if slot.state == "ready":
        return slot
    if slot.state == "failed":
        st.error(f"**The model could not be loaded.** {literal(slot.error)}")
        st.markdown(
            f"What to do: check the name in the sidebar. What always loads here, offline, is the bundled "
            f"`{DEFAULT_MODEL}`; a local folder holding `config.json` and weights loads too; any other Hugging Face "
            "id needs the hub to be reachable or the model to be in the local Hugging Face cache."
        )
        if st.button("Try loading again", key="kitchen_retry"):
            reload_slot(selection)
            st.rerun()
        st.stop()
    redraw_while(lambda: slot.state == "loading", lambda: show_load_progress(slot), every=LOAD_REDRAW_SECONDS)
    st.stop()


def kitchen_steps(selection: Selection) -> list[StepInfo]:
    """The selected model's last minute of kitchen steps (none when nobody has started it)."""
    slot = open_slot(selection)
    return slot.recent_steps() if slot is not None else []
