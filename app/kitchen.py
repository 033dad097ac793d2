"""The shared kitchen: one model per (name, device, dtype) for every browser session, and a queue per model.

A `ModelSlot` starts the model in its own worker process (engine.worker: the UI's Python never shares an
interpreter with the timed region) and waits for it on a background thread, so every visitor sees the same,
real loading progress. Then it serves jobs one at a time in arrival order: generations on the one shared
model never interleave, and a visitor whose job is queued sees how many are ahead. A job stops between two
tokens when its Stop button is pressed or its browser session is gone (a closed tab).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import streamlit as st

from engine import EngineError, GenerationCancelled, GenerationSettings, LoadProgress, Request, TokenRecord, Trace
from engine.experiments import ExperimentProgress, ExperimentResult, Options, default_result_path, save_result
from engine.loading import ModelFacts
from engine.trace import default_trace_path, save_trace
from engine.worker import ModelWorker


def dashboard_threads() -> int:
    """CPU threads for the dashboard's model: $INFERENCE_KITCHEN_THREADS, else every physical core but one.

    The browser and the server draw on the same machine. When the model's threads fill every core, any drawing
    preempts one of them and each parallel step waits for it (measured on 2 cores: a neighbour busy half the
    time slowed decode from 33 to 59 ms per token; with one core left free, a fully busy neighbour cost 5%).
    """
    raw = os.environ.get("INFERENCE_KITCHEN_THREADS", "").strip()
    if raw:
        return max(1, int(raw))
    return max(1, (psutil.cpu_count(logical=False) or os.cpu_count() or 1) - 1)


def session_alive(session_id: str | None) -> bool:
    """True while the browser session that asked for a job is still connected (always true outside a server)."""
    if session_id is None:
        return True
    from streamlit.runtime import Runtime

    return not Runtime.exists() or Runtime.instance().is_active_session(session_id)


def current_session_id() -> str | None:
    """This script run's session id, or None outside a Streamlit server (tests, scripts)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    return context.session_id if context is not None else None


@dataclass(eq=False, kw_only=True)
class Job:
    """One visitor's order for the shared model: queued, then run by the slot's worker; the page redraws from it."""

    session_id: str | None = None
    state: str = "queued"  # queued -> running -> done | stopped | failed
    queue: "ModelSlot | None" = None  # set when submitted
    facts: ModelFacts | None = None  # the model that ran it
    saved_to: Path | None = None
    error: str | None = None
    stop_pressed: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.state in ("queued", "running")

    def is_set(self) -> bool:
        """The engine's cancel flag: Stop was pressed, or the browser tab that asked is gone."""
        return self.stop_pressed.is_set() or not session_alive(self.session_id)

    def run(self, worker: ModelWorker) -> None:
        """Run on the slot's thread: do the work in the model's process; every failure becomes a message."""
        if self.is_set():
            self.state = "stopped"
            return
        self.state, self.facts = "running", worker.facts
        try:
            self.work(worker)
            self.state = "done"
        except GenerationCancelled:
            self.state = "stopped"
        except EngineError as err:
            self.error, self.state = str(err), "failed"
        except Exception as err:  # noqa: BLE001 - the worker must survive anything one job does
            self.error, self.state = f"the run failed unexpectedly: {type(err).__name__}: {err}", "failed"

    def work(self, worker: ModelWorker) -> None:
        """The job's own work (subclasses)."""
        raise NotImplementedError


@dataclass(eq=False, kw_only=True)
class GenerationJob(Job):
    """A generation: the records arrive one by one while it runs; the trace is saved when it ends."""

    prompt: str
    settings: GenerationSettings
    request: Request | None = None
    records: list[TokenRecord] = field(default_factory=list)
    trace: Trace | None = None

    def work(self, worker: ModelWorker) -> None:
        def accept(request: Request) -> None:
            self.request = request

        self.trace = worker.generate(self.prompt, self.settings, cancel=self, on_request=accept, on_record=self.records.append)
        self.saved_to = save_trace(self.trace, default_trace_path())


@dataclass(eq=False, kw_only=True)
class ExperimentJob(Job):
    """An experiment: progress events arrive while it runs; the result is saved when it ends."""

    experiment: str
    options: Options
    progress: ExperimentProgress | None = None
    result: ExperimentResult | None = None

    def work(self, worker: ModelWorker) -> None:
        def accept(event: ExperimentProgress) -> None:
            self.progress = event

        self.result = worker.experiment(self.experiment, self.options, cancel=self, on_progress=accept)
        self.saved_to = save_result(self.result, default_result_path(self.experiment))


OPEN_SLOTS: "weakref.WeakSet[ModelSlot]" = weakref.WeakSet()  # lets tests and shutdown close every worker


class ModelSlot:
    """One model shared by all sessions: loads in the background, then runs queued jobs one at a time."""

    def __init__(self, name: str, device: str, dtype: str) -> None:
        OPEN_SLOTS.add(self)
        self.name, self.device, self.dtype = name, device, dtype
        self.progress = LoadProgress("waiting", 0.0, f"Getting {name} ready")
        self.worker: ModelWorker | None = None
        self.facts: ModelFacts | None = None
        self.tokenizer: object | None = None  # the worker's tokenizer, copied here for the page's tokenizer view
        self.error: str | None = None
        self._jobs: deque = deque()
        self._wake = threading.Condition()
        threading.Thread(target=self._load_then_serve, name=f"kitchen-{name}-{device}-{dtype}", daemon=True).start()

    @property
    def state(self) -> str:
        """'loading', 'ready' or 'failed'."""
        return "failed" if self.error else "ready" if self.facts is not None else "loading"

    def submit(self, job) -> None:
        """Queue a job (anything with run(worker) and state); the slot runs jobs in arrival order."""
        job.queue = self
        with self._wake:
            self._jobs.append(job)
            self._wake.notify()

    def ahead_of(self, job) -> int:
        """How many jobs will run before this one (0 when it is running or done)."""
        with self._wake:
            return self._jobs.index(job) if job in self._jobs else 0

    def close(self) -> None:
        """Stop the model's worker process (the slot is unusable afterwards)."""
        if self.worker is not None:
            self.worker.close()

    def _load_then_serve(self) -> None:
        try:
            self.worker = ModelWorker(self.name, device=self.device, dtype=self.dtype, threads=dashboard_threads())
            self.worker.wait_loaded(self._on_progress)
            self.tokenizer, self.facts = self.worker.tokenizer, self.worker.facts
        except EngineError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - shown to the visitor as a sentence, never a traceback
            self.error = f"could not load model {self.name!r}: {type(err).__name__}: {err}"
        while True:
            with self._wake:
                while not self._jobs:
                    self._wake.wait()
                job = self._jobs[0]
            if self.facts is None or not self.worker.is_alive():
                self.error = self.error or "the model's worker process has stopped"
                job.error, job.state = self.error, "failed"
            else:
                job.run(self.worker)
            with self._wake:
                self._jobs.popleft()

    def _on_progress(self, event: LoadProgress) -> None:
        self.progress = event


@st.cache_resource(show_spinner=False)
def model_slot(name: str, device: str, dtype: str) -> ModelSlot:
    """The one place heavy things load: a ModelSlot per (model, device, dtype), shared by all sessions."""
    return ModelSlot(name, device, dtype)


def show_load_progress(slot: ModelSlot, *, doing: str = "Loading") -> None:
    """The slot's real loading progress as a bar (e.g. 'Loading SmolLM2-135M-Instruct first: …')."""
    st.progress(min(max(slot.progress.fraction, 0.0), 1.0), text=f"{doing} {slot.name}: {slot.progress.message}")


def require_ready_model(selection) -> ModelSlot:
    """The selected model's slot once it is ready; meanwhile show real loading progress (or the error) and stop."""
    slot = model_slot(selection.model, selection.device, selection.dtype)
    if slot.state == "ready":
        return slot
    if slot.state == "failed":
        st.error(f"**The model could not be loaded.** {slot.error}")
        st.markdown(
            "What to do: check the name in the sidebar (a Hugging Face id such as "
            "`HuggingFaceTB/SmolLM2-135M-Instruct`, or a local folder holding `config.json` and weights); other "
            "models need the hub to be reachable or to be in the local Hugging Face cache. The bundled default, "
            "`SmolLM2-135M-Instruct`, always works offline."
        )
        if st.button("Try loading again", key="kitchen_retry"):
            model_slot.clear(selection.model, selection.device, selection.dtype)
            st.rerun()
        st.stop()

    @st.fragment(run_every=0.5)
    def loading_progress() -> None:
        show_load_progress(slot)
        if slot.state != "loading":
            st.rerun()

    loading_progress()
    st.stop()
