"""The shared kitchen: one model per (name, device, dtype) for every browser session.

A `ModelSlot` starts the model in its own worker process (engine.worker: the UI's Python never shares an
interpreter with the timed region) and waits for it on a background thread, so every visitor sees the same,
real loading progress. Then every visitor's job goes to the worker at once, on a thread of its own: the worker
cooks generations together in one continuously batched loop (engine.serving) and runs an experiment alone once
the batch has drained. A visitor whose request waits for room in the batch sees their place and an estimated
wait. A job stops at the next step when its Stop button is pressed or its browser session is gone (a closed tab).
The slot keeps the kitchen's last minute of steps for the scheduler's view; if the worker dies, the jobs in
flight fail with a message and the slot starts a new one.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from app.early import dashboard_threads, kitchen_max_batch, machine, take_default_worker
from app.hosting import check_model_allowed, kitchen_config, offered_models, queue_length
from app.visitors import may_load_models
from engine import (
    EngineError,
    GenerationCancelled,
    GenerationSettings,
    LoadProgress,
    Request,
    SettingsError,
    TokenRecord,
    Trace,
)
from engine.experiments import ExperimentProgress, ExperimentResult, Options, default_result_path, save_result
from engine.facts import DEFAULT_MODEL, ModelFacts, model_slot_name
from engine.steps import QueuePlace, StepInfo
from engine.store import RunStore
from engine.tokens import count_tokens
from engine.trace import default_trace_path, save_trace
from engine.worker import ModelWorker

KITCHEN_WINDOW_S = 60.0  # how much of the kitchen's recent history the scheduler's view keeps


@dataclass(frozen=True)
class Selection:
    """The model, device and dtype a visitor picked (what the shared model slot is keyed by)."""

    model: str
    device: str
    dtype: str


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
    owner: str = ""  # the visitor whose run it is (app.visitors; "" in local mode), recorded with the saved file
    seconds_cap: float | None = None  # hosted mode: stopped once it has cooked this long (its trace kept)
    state: str = "queued"  # queued -> running -> done | stopped | failed
    slot: ModelSlot | None = None  # the slot it was submitted to
    facts: ModelFacts | None = None  # the model that ran it
    saved_to: Path | None = None
    error: str | None = None
    started_s: float | None = None  # time.monotonic() when sent to the worker; a generation: when cooking began
    ended_s: float | None = None  # and when it let go
    table: int | None = None  # its anonymous number in the kitchen (the worker's request id)
    queue_place: QueuePlace | None = None  # while it waits for room in the batch
    cooking_since_s: float | None = None  # time.monotonic() when the kitchen began its work (its prefill)
    stop_pressed: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.state in ("queued", "running")

    @property
    def out_of_time(self) -> bool:
        """True once it has cooked for longer than this kitchen allows one request."""
        since = self.cooking_since_s
        return self.seconds_cap is not None and since is not None and time.monotonic() - since > self.seconds_cap

    def is_set(self) -> bool:
        """The engine's cancel flag: Stop was pressed, the browser tab that asked is gone, or its time is up."""
        return self.stop_pressed.is_set() or self.out_of_time or not session_alive(self.session_id)

    def fail(self, error: str) -> None:
        """End the job with a sentence saying why."""
        self.error, self.state = error, "failed"

    def end(self, *, error: str | None, outcome: str) -> None:
        """Record when it let go, then how it ended: failed with `error`'s sentence, or `outcome` (done, stopped)."""
        self.ended_s = time.monotonic()  # before the state: whoever sees the end sees when it was
        if error is not None:
            self.fail(error)
        else:
            self.state = outcome

    def run(self, worker: ModelWorker) -> None:
        """Run on the slot's thread: do the work in the model's process; every failure becomes a message."""
        if self.is_set():
            self.state = "stopped"
            return
        self.state, self.facts, self.started_s = "running", worker.facts, time.monotonic()
        if isinstance(self, ExperimentJob):
            self.cooking_since_s = self.started_s
        error, outcome = None, "done"
        try:
            self.work(worker)
        except GenerationCancelled:
            outcome = "stopped"
        except EngineError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - the worker must survive anything one job does
            error = f"the run failed unexpectedly: {type(err).__name__}: {err}"
        self.end(error=error, outcome=outcome)

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
    prompt_tokens_cap: int | None = None  # hosted mode: the most tokens the typed prompt may have
    path: str = "eager"  # the decode path (engine.paths); a compiled one runs alone once it is prepared
    path_progress: str | None = None  # while its path is being prepared: the latest sentence about it

    def work(self, worker: ModelWorker) -> None:
        if self.prompt_tokens_cap is not None and worker.tokenizer is not None:
            count = count_tokens(worker.tokenizer, self.prompt)
            if count > self.prompt_tokens_cap:
                raise EngineError(
                    f"the prompt is {count:,} tokens; this kitchen takes at most {self.prompt_tokens_cap:,} per request"
                )

        def accept(request: Request) -> None:
            self.request = request

        def take(record: TokenRecord) -> None:
            if not self.records:  # its prefill step began t_ms before this first token: the model took it then
                self.queue_place, self.path_progress = None, None
                self.started_s = time.monotonic() - record.t_ms / 1000
                self.cooking_since_s = self.started_s
            self.records.append(record)

        def seat(table: int) -> None:
            self.table = table

        def wait(place: QueuePlace) -> None:
            self.queue_place = place

        def preparing(sentence: str) -> None:
            self.path_progress = sentence

        try:
            self.trace = worker.generate(
                self.prompt,
                self.settings,
                cancel=self,
                on_request=accept,
                on_record=take,
                on_queue=wait,
                on_table=seat,
                path=self.path,
                on_path_progress=preparing,
            )
        except GenerationCancelled as err:
            if isinstance(err.partial, Trace):  # the tokens made before the stop, ending "stopped"
                self.trace = err.partial
                self.saved_to = keep(save_trace(err.partial, default_trace_path()), owner=self.owner)
            raise
        self.saved_to = keep(save_trace(self.trace, default_trace_path()), owner=self.owner)


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
                self.saved_to = keep(save_result(err.partial, default_result_path(self.experiment)), owner=self.owner)
            raise
        self.saved_to = keep(save_result(self.result, default_result_path(self.experiment)), owner=self.owner)


def keep(saved: Path, *, owner: str) -> Path:
    """Record a saved run's owner in the run store (hosted mode: what the Runs page shows whom); returns the file."""
    if owner:
        RunStore().set_owner(f"{saved.parent.name}/{saved.name}", owner)
    return saved


OPEN_SLOTS: weakref.WeakSet[ModelSlot] = weakref.WeakSet()  # every slot not yet closed, for close_all_slots


class ModelSlot:
    """One model shared by all sessions: loads in the background, then sends every job to its batched kitchen.

    Its worker process lives until `close()`: a failed load keeps the slot (to show its error and fail jobs
    sent to it) until "Try loading again" closes it; the server's exit closes every slot (close_all_slots).
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
        self.restarts = 0
        self.steps: deque[StepInfo] = deque(maxlen=20_000)  # the kitchen's recent steps, newest last
        self._jobs: list[Job] = []  # submitted and not yet ended
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set once loaded, failed or closed
        self.thread = threading.Thread(target=self._load, name=f"kitchen-{name}-{device}-{dtype}", daemon=True)
        self.thread.start()

    @property
    def state(self) -> str:
        """'loading', 'ready' or 'failed'."""
        return "failed" if self.error else "ready" if self.facts is not None else "loading"

    def submit(self, job: Job) -> None:
        """Send a job to the kitchen on a thread of its own (a closed slot, or a full queue, fails it at once)."""
        job.slot = self
        limit = queue_length()
        with self._lock:
            if self.closed:
                job.fail("this model was unloaded; pick it again in the sidebar")
                return
            waiting = sum(1 for other in self._jobs if other.state == "queued")
            if limit is not None and waiting >= limit:
                job.fail(
                    f"the kitchen's queue is full ({waiting} orders waiting, this kitchen's limit): "
                    "try again in a minute"
                )
                return
            self._jobs.append(job)
        threading.Thread(target=self._serve, args=(job,), name=f"job-{self.name}", daemon=True).start()

    def ahead_of(self, job: Job) -> int:
        """How many requests the kitchen will start before this one (0 when it is cooking or done)."""
        return job.queue_place.place - 1 if job.queue_place is not None and job.active else 0

    def active_jobs(self) -> list[Job]:
        """Jobs submitted and not yet ended."""
        with self._lock:
            return list(self._jobs)

    def recent_steps(self, *, window_s: float = KITCHEN_WINDOW_S) -> list[StepInfo]:
        """The kitchen's steps that began in the last `window_s` seconds, oldest first."""
        since = time.time() - window_s
        return [step for step in list(self.steps) if step.began_s >= since]

    def close(self, *, timeout_s: float = 10.0) -> None:
        """Stop the model's worker process; jobs not yet sent fail, running ones stop."""
        with self._lock:
            self.closed = True
        self._ready.set()
        if self.worker is not None:
            self.worker.close()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=timeout_s)
        OPEN_SLOTS.discard(self)

    def _load(self) -> None:
        """Start the worker and wait for its model (the slot's thread, and again after a crash)."""
        try:
            worker = self._adopt_early_worker() or self._start_worker()
            if worker is None:
                return  # closed meanwhile
            self.tokenizer, self.facts = worker.tokenizer, worker.facts
        except EngineError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - shown to the visitor as a sentence, never a traceback
            self.error = f"could not load model {self.name!r}: {type(err).__name__}: {err}"
        finally:
            if self.error is not None and self.worker is not None:
                self.worker.close()  # a failed load's process ends by itself; one that timed out does not
            self._ready.set()

    def _start_worker(self) -> ModelWorker | None:
        """Start this slot's own worker and wait for its model (None: the slot was closed meanwhile)."""
        worker = ModelWorker(
            self.name,
            device=self.device,
            dtype=self.dtype,
            threads=dashboard_threads(),
            max_batch=kitchen_max_batch(),
            on_step=self.steps.append,
        )
        with self._lock:
            if self.closed:
                worker.close()
                return None
            self.worker = worker
        worker.wait_loaded(self._on_progress, timeout_s=kitchen_config().load_timeout_s)
        return worker

    def _adopt_early_worker(self) -> ModelWorker | None:
        """The worker `make run` started with the server, if this slot is the default model on its device and dtype."""
        if self.name != DEFAULT_MODEL or self.restarts:
            return None
        worker = take_default_worker()
        if worker is None:
            return None
        with self._lock:
            if self.closed:
                worker.close()
                return None
            self.worker = worker
        worker.on_step = self.steps.append
        try:
            worker.wait_loaded(self._on_progress, timeout_s=kitchen_config().load_timeout_s)
        except EngineError:
            worker.close()
            return None  # a fresh start reports the error in this slot's own words
        if (worker.facts.device.split(":")[0], worker.facts.dtype) != (self.device.split(":")[0], self.dtype):
            worker.close()  # the visitor picked another device or dtype before it was ready
            return None
        return worker

    def _serve(self, job: Job) -> None:
        """A job's own thread: wait for the model, run the job in the worker, restart the worker if it died."""
        self._ready.wait()
        try:
            if self.closed:
                job.fail("this model was unloaded before the job ran")
            elif self.facts is None or self.worker is None:
                job.fail(self.error or "the model is not loaded")
            else:
                worker = self.worker
                job.run(worker)
                if not worker.is_alive() and not self.closed:
                    job.fail(
                        f"the kitchen's worker process stopped (exit code {worker.process.poll()}) while cooking; "
                        "a new one is starting: press the button again in a few seconds"
                    )
                    self._restart(worker)
        finally:
            with self._lock:
                if job in self._jobs:
                    self._jobs.remove(job)

    def _restart(self, dead: ModelWorker) -> None:
        """Start a new worker in place of a dead one (once, whichever job noticed first)."""
        with self._lock:
            if self.closed or self.worker is not dead:
                return
            self.worker, self.facts, self.restarts = None, None, self.restarts + 1
            self.progress = LoadProgress("waiting", 0.0, "The worker stopped; starting it again")
            self._ready.clear()
        dead.close()
        self.thread = threading.Thread(target=self._load, name=f"kitchen-{self.name}-restart", daemon=True)
        self.thread.start()

    def _on_progress(self, event: LoadProgress) -> None:
        self.progress = event


def close_all_slots() -> None:
    """Close every open slot's worker process and thread (registered to run when the server exits)."""
    for slot in list(OPEN_SLOTS):
        slot.close(timeout_s=5)


atexit.register(close_all_slots)


def release_slot(slot: ModelSlot) -> None:
    """A slot leaves the cache (the least recently used past the limit, or cleared): close its process and thread."""
    slot.close(timeout_s=5)


@st.cache_resource(show_spinner=False, max_entries=kitchen_config().max_loaded_models, on_release=release_slot)
def shared_slot(name: str, device: str, dtype: str) -> ModelSlot:
    """The one place heavy things load: a ModelSlot per (model, device, dtype), shared by all sessions; at most
    `max_loaded` of them (the configuration), the least recently used closed first."""
    return ModelSlot(name, device, dtype)


def kitchen_default() -> Selection:
    """What a kitchen cooks on before anyone picks: its first offered model on the engine's device and dtype."""
    device = machine().devices[0]
    return Selection(model=(offered_models() or (DEFAULT_MODEL,))[0], device=device, dtype=machine().dtypes[device][0])


def visitor_menu() -> list[Selection] | None:
    """A hosted kitchen's visitor (not the presenter) cooks on these: the default and every model loaded now;
    None where the visitor may load any model they may name (local mode, the presenter)."""
    if may_load_models():
        return None
    default = kitchen_default()
    default = Selection(model_slot_name(default.model), default.device, default.dtype)
    loaded = [Selection(slot.name, slot.device, slot.dtype) for slot in list(OPEN_SLOTS) if not slot.closed]
    offered = {model_slot_name(name) for name in offered_models() or ()}
    others = sorted(
        {choice for choice in loaded if choice.model in offered and choice != default},
        key=lambda choice: (choice.model, choice.device, choice.dtype),
    )
    # The default is on the menu when it is loaded or there is room for it: starting it never closes a model
    # other visitors are cooking on (only the presenter's loads can).
    room = default in loaded or len(loaded) < kitchen_config().max_loaded_models
    return ([default] if room or not others else []) + others


def model_slot(name: str, device: str, dtype: str) -> ModelSlot:
    """The slot for a model (its folder however spelled shares one); SettingsError for a model not offered here,
    or, for a hosted kitchen's visitor, one not loaded (only the presenter loads models)."""
    check_model_allowed(name)
    wanted = Selection(model_slot_name(name), device, dtype)
    menu = visitor_menu()
    if menu is not None and wanted not in {Selection(model_slot_name(c.model), c.device, c.dtype) for c in menu}:
        raise SettingsError(f"{name!r} ({dtype} on {device}) is not loaded here, and only the presenter loads models")
    return shared_slot(wanted.model, device, dtype)


def open_slot(selection: Selection) -> ModelSlot | None:
    """The selected model's slot if some visitor already started it, else None (nothing is loaded)."""
    wanted = (model_slot_name(selection.model), selection.device, selection.dtype)
    return next((slot for slot in list(OPEN_SLOTS) if (slot.name, slot.device, slot.dtype) == wanted), None)


def reload_slot(selection: Selection) -> None:
    """What "Try loading again" does: close the failed slot (its thread and process); the next visit starts afresh."""
    slot = open_slot(selection)
    if slot is not None:
        slot.close()
    shared_slot.clear(model_slot_name(selection.model), selection.device, selection.dtype)
