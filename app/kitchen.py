"""The shared kitchen: one model per (name, device, dtype) for every browser session, and a queue per model.

A `ModelSlot` starts the model in its own worker process (engine.worker: the UI's Python never shares an
interpreter with the timed region) and waits for it on a background thread, so every visitor sees the same,
real loading progress. Then it serves jobs one at a time in arrival order: generations on the one shared
model never interleave, and a visitor whose job is queued sees how many are ahead. A job stops between two
tokens when its Stop button is pressed or its browser session is gone (a closed tab).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
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


@dataclass(frozen=True)
class Selection:
    """The model, device and dtype a visitor picked (what the shared model slot is keyed by)."""

    model: str
    device: str
    dtype: str


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
    slot: ModelSlot | None = None  # the slot it was submitted to
    facts: ModelFacts | None = None  # the model that ran it
    saved_to: Path | None = None
    error: str | None = None
    started_s: float | None = None  # time.monotonic() when the model took it (None: it never ran)
    ended_s: float | None = None  # and when it let go
    stop_pressed: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.state in ("queued", "running")

    def is_set(self) -> bool:
        """The engine's cancel flag: Stop was pressed, or the browser tab that asked is gone."""
        return self.stop_pressed.is_set() or not session_alive(self.session_id)

    def fail(self, error: str) -> None:
        """End the job with a sentence saying why."""
        self.error, self.state = error, "failed"

    def run(self, worker: ModelWorker) -> None:
        """Run on the slot's thread: do the work in the model's process; every failure becomes a message."""
        if self.is_set():
            self.state = "stopped"
            return
        self.state, self.facts, self.started_s = "running", worker.facts, time.monotonic()
        error, outcome = None, "done"
        try:
            self.work(worker)
        except GenerationCancelled:
            outcome = "stopped"
        except EngineError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - the worker must survive anything one job does
            error = f"the run failed unexpectedly: {type(err).__name__}: {err}"
        self.ended_s = time.monotonic()  # before the state: whoever sees the end sees when it was
        if error is not None:
            self.fail(error)
        else:
            self.state = outcome

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

        self.trace = worker.generate(
            self.prompt, self.settings, cancel=self, on_request=accept, on_record=self.records.append
        )
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

        try:
            self.result = worker.experiment(self.experiment, self.options, cancel=self, on_progress=accept)
        except GenerationCancelled as err:
            if err.partial is not None:  # keep what was measured before the stop, marked stopped
                self.result = err.partial
                self.saved_to = save_result(err.partial, default_result_path(self.experiment))
            raise
        self.saved_to = save_result(self.result, default_result_path(self.experiment))


OPEN_SLOTS: weakref.WeakSet[ModelSlot] = weakref.WeakSet()  # every slot not yet closed, for close_all_slots


class ModelSlot:
    """One model shared by all sessions: loads in the background, then runs queued jobs one at a time.

    Its thread and worker process live until `close()`: a failed load keeps the slot (to show its error and fail
    jobs sent to it) until "Try loading again" closes it; the server's exit closes every slot (close_all_slots).
    """

    def __init__(self, name: str, device: str, dtype: str) -> None:
        OPEN_SLOTS.add(self)
        self.name, self.device, self.dtype = name, device, dtype
        self.progress = LoadProgress("waiting", 0.0, f"Getting {name} ready")
        self.worker: ModelWorker | None = None
        self.facts: ModelFacts | None = None
        self.tokenizer: object | None = None  # the worker's tokenizer, copied here for the page's tokenizer view
        self.error: str | None = None
        self.closed = False
        self._jobs: deque[Job] = deque()
        self._wake = threading.Condition()
        self.thread = threading.Thread(
            target=self._load_then_serve, name=f"kitchen-{name}-{device}-{dtype}", daemon=True
        )
        self.thread.start()

    @property
    def state(self) -> str:
        """'loading', 'ready' or 'failed'."""
        return "failed" if self.error else "ready" if self.facts is not None else "loading"

    def submit(self, job: Job) -> None:
        """Queue a job; the slot runs jobs in arrival order (a closed slot fails it at once)."""
        job.slot = self
        with self._wake:
            if self.closed:
                job.fail("this model was unloaded; pick it again in the sidebar")
                return
            self._jobs.append(job)
            self._wake.notify()

    def ahead_of(self, job: Job) -> int:
        """How many jobs will run before this one (0 when it is running or done)."""
        with self._wake:
            return self._jobs.index(job) if job in self._jobs else 0

    def close(self, *, timeout_s: float = 10.0) -> None:
        """Stop the model's worker process and the slot's thread; queued jobs fail, a running one stops."""
        with self._wake:
            self.closed = True
            waiting = list(self._jobs)[1:] if self._jobs and self._jobs[0].state == "running" else list(self._jobs)
            for job in waiting:
                job.fail("this model was unloaded before the job ran")
            self._wake.notify_all()
        if self.worker is not None:
            self.worker.close()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=timeout_s)
        OPEN_SLOTS.discard(self)

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
                while not self._jobs and not self.closed:
                    self._wake.wait()
                if self.closed:
                    return
                job = self._jobs[0]
            if self.facts is None or not self.worker.is_alive():
                self.error = self.error or "the model's worker process has stopped"
                job.fail(self.error)
            else:
                job.run(self.worker)
            with self._wake:
                if self._jobs and self._jobs[0] is job:
                    self._jobs.popleft()

    def _on_progress(self, event: LoadProgress) -> None:
        self.progress = event


def close_all_slots() -> None:
    """Close every open slot's worker process and thread (registered to run when the server exits)."""
    for slot in list(OPEN_SLOTS):
        slot.close(timeout_s=5)


atexit.register(close_all_slots)


@st.cache_resource(show_spinner=False)
def model_slot(name: str, device: str, dtype: str) -> ModelSlot:
    """The one place heavy things load: a ModelSlot per (model, device, dtype), shared by all sessions."""
    return ModelSlot(name, device, dtype)


def open_slot(selection: Selection) -> ModelSlot | None:
    """The selected model's slot if some visitor already started it, else None (nothing is loaded)."""
    wanted = (selection.model, selection.device, selection.dtype)
    return next((slot for slot in list(OPEN_SLOTS) if (slot.name, slot.device, slot.dtype) == wanted), None)


def reload_slot(selection: Selection) -> None:
    """What "Try loading again" does: close the failed slot (its thread and process); the next visit starts afresh."""
    model_slot(selection.model, selection.device, selection.dtype).close()
    model_slot.clear(selection.model, selection.device, selection.dtype)
