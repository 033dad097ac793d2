"""Send a job to the kitchen and watch it: the one pattern every page that runs something shares.

A page submits a job (a generation or an experiment) to the selected model's slot, then redraws from what the
job has recorded in a fragment that reruns every so often; when the job ends, one full rerun draws the final
state. Nothing here runs inside the engine's timed region: the worker process cooks, the page only reads.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app.kitchen import Job, ModelSlot, Selection, current_session_id, model_slot, reload_slot
from app.sidebar import current_selection
from engine import DEFAULT_MODEL

LOAD_REDRAW_SECONDS = 0.5


def submit_job(job: Job, *, key: str) -> None:
    """Queue a job on the selected model, remember it as this visitor's `key`, and redraw the page."""
    job.session_id = current_session_id()
    st.session_state[key] = job
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
    """While a job waits (model loading, or others ahead in the queue), say so; True when something was shown."""
    if job.state != "queued" or job.slot is None:
        return False
    if job.slot.state == "loading":
        show_load_progress(job.slot, doing="First loading")
    else:
        ahead = job.slot.ahead_of(job)
        st.info(f"⏳ Waiting for the kitchen: {ahead} ahead of you. The model does one thing at a time.")
    return True


def require_ready_model(selection: Selection) -> ModelSlot:
    """The selected model's slot once it is ready; meanwhile show real loading progress (or the error) and stop."""
    slot = model_slot(selection.model, selection.device, selection.dtype)
    if slot.state == "ready":
        return slot
    if slot.state == "failed":
        st.error(f"**The model could not be loaded.** {slot.error}")
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
