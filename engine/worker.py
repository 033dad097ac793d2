"""Run a model in its own process and talk to it through a pipe.

A dashboard draws charts in Python. On a thread of the same process, the model's forward pass (hundreds of
small Python-level ops) must win the GIL back from the UI after every op, so drawing can land inside a timed
step. Measured here in-process with one model thread, the p90 gap between tokens rose to 325-590 ms while a
page redrew (together with other costs since removed), and a shorter GIL switch interval made it worse. In a
worker process the model shares only CPU cores with the UI, never the interpreter, and its torch thread
setting is its own. `ModelWorker` is the parent's handle: it loads the model over there, then sends it
requests from any number of threads; the worker cooks generations together in one continuously batched loop
(engine.serving) and runs an experiment alone once the batch has drained. A generation asking for a compiled
decode path (engine.paths) runs alone too, once its path is ready: the path is prepared on a thread of its own
(minutes the first time) while the batch keeps cooking everyone else's eager requests.

The messages, every one a frozen dataclass below (pickled over one socket), each request's tagged with its id:

    worker -> parent while loading:   Machine (devices and dtypes, once torch is in), Loading* ->
                                      Ready | Failed (then the worker exits)
    parent -> worker, any time:       Generate | RunExperiment (a new id each), Stop(id)
    worker -> parent per request:     Queued* (its place while it waits), then
                                      Prepared, PathProgress* (a generation on a compiled decode path, while
                                      the path is prepared), Record* (a generation) | Measuring* (an experiment),
                                      then exactly one of Finished | Cancelled | Failed
    worker -> parent per step:        Step (the kitchen's scheduler view; no request's text)
    (a kitchen round's messages travel together in one Batch, in the order they were made)

A Stop names its request, so it can neither be lost nor hit another one; the worker looks at stops between two
steps or measurements. A closed socket (the parent is gone) stops everything and ends the worker.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from engine import errors
from engine.errors import EngineError, GenerationCancelled
from engine.settings import DEFAULT_MAX_BATCH

# Only names for annotations below: this module is imported by the dashboard's server to start the model's
# process early, before anything imports torch; the worker process imports what it runs inside serve().
if TYPE_CHECKING:
    from engine.experiments.base import ExperimentProgress, Options
    from engine.experiments.result import ExperimentResult
    from engine.facts import LoadProgress, MachineFacts, ModelFacts
    from engine.loading import LoadedModel
    from engine.records import TokenRecord
    from engine.request import CancelFlag, Request
    from engine.settings import GenerationSettings
    from engine.steps import QueuePlace, StepInfo
    from engine.trace import Trace


# ---- the messages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """Worker -> parent, first of all (torch imported, the model not yet): the devices and dtypes on offer."""

    facts: MachineFacts


@dataclass(frozen=True)
class Loading:
    """Worker -> parent: how far loading the model is."""

    event: LoadProgress


@dataclass(frozen=True)
class Ready:
    """Worker -> parent: the model is loaded; its facts, its tokenizer for the pages' tokenizer views
    (engine.tokens.tokenizer_for_pages: no torch needed to read it) and the kitchen's batch limits."""

    facts: ModelFacts
    tokenizer: object
    max_batch: int
    kv_budget_bytes: int


@dataclass(frozen=True)
class Generate:
    """Parent -> worker: run one prompt with these settings, on this decode path (engine.paths)."""

    request_id: int
    prompt: str
    settings: GenerationSettings
    path: str = "eager"


@dataclass(frozen=True)
class RunExperiment:
    """Parent -> worker: run one experiment (engine.experiments) with these options (None: its defaults)."""

    request_id: int
    name: str
    options: Options | None


@dataclass(frozen=True)
class Stop:
    """Parent -> worker: stop this request at the next step boundary (Stop pressed, or its visitor left)."""

    request_id: int


@dataclass(frozen=True)
class Queued:
    """Worker -> parent: the request waits for a place in the batch: its place and estimated wait."""

    request_id: int
    place: QueuePlace


@dataclass(frozen=True)
class Prepared:
    """Worker -> parent: the generation's checked, tokenized request."""

    request_id: int
    request: Request


@dataclass(frozen=True)
class PathProgress:
    """Worker -> parent: how preparing the request's decode path goes (a sentence), while the batch cooks on."""

    request_id: int
    message: str


@dataclass(frozen=True)
class PathNote:
    """Inside the worker: the preparing thread's news for the main loop (`outcome` set once it has ended)."""

    name: str
    message: str
    outcome: object = None  # the PreparedPath, or the exception that says why it cannot be had


@dataclass(frozen=True)
class Record:
    """Worker -> parent: one token's record, sent after the clock stopped."""

    request_id: int
    record: TokenRecord


@dataclass(frozen=True)
class Measuring:
    """Worker -> parent: an experiment's progress, sent between two measurements."""

    request_id: int
    event: ExperimentProgress


@dataclass(frozen=True)
class Finished:
    """Worker -> parent: the request's result: a Trace for a generation, an ExperimentResult for an experiment."""

    request_id: int
    result: Trace | ExperimentResult


@dataclass(frozen=True)
class Cancelled:
    """Worker -> parent: the request stopped between two steps because a stop arrived; what was measured before it
    comes along: a generation's tokens as a trace ending "stopped", an experiment's points as a stopped result."""

    request_id: int
    message: str
    partial: ExperimentResult | Trace | None = None


@dataclass(frozen=True)
class Failed:
    """Worker -> parent: loading failed (request_id None; the worker exits), or one request did (it goes on)."""

    request_id: int | None
    error_type: str
    message: str


@dataclass(frozen=True)
class Step:
    """Worker -> parent: one kitchen step, for the scheduler's view."""

    info: StepInfo


@dataclass(frozen=True)
class Batch:
    """Worker -> parent: everything one kitchen round produced (its records, steps, ends), in order, sent at once.

    One message per round instead of one per token: with eight visitors the parent (a busy web server) unpickles
    one message per step, not nine, and the worker never waits on it mid-round.
    """

    messages: tuple


POLL_SECONDS = 0.05  # how often the parent looks at a request's cancel flag while waiting for its next message


# ---- the worker process ---------------------------------------------------------------------------------------


def kv_budget_bytes(loaded: LoadedModel) -> int:
    """Memory the batch's KV cache may take: half of what the machine has free now (80% of a GPU's free memory)."""
    import psutil
    import torch

    if loaded.device.type == "cuda":
        return int(torch.cuda.mem_get_info(loaded.device)[0] * 0.8)
    return int(psutil.virtual_memory().available * 0.5)


def receive_forever(connection: Connection, inbox: queue.Queue, stops: dict[int, threading.Event]) -> None:
    """The worker's reader thread: file requests in the inbox and set the stops they are sent; None once the
    parent is gone (every request stops)."""
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            for stop in list(stops.values()):
                stop.set()
            inbox.put(None)
            return
        if isinstance(message, Stop):
            # a request's stop is registered before it is filed (one socket keeps the order); a stop for a request
            # that has ended (a late click) finds nothing and is dropped
            if (stop := stops.get(message.request_id)) is not None:
                stop.set()
                inbox.put(message)  # wakes the loop, which may be waiting for a decode path being prepared
        else:
            if isinstance(message, Generate | RunExperiment):
                stops[message.request_id] = threading.Event()
            inbox.put(message)


def serve(
    connection: Connection,
    name: str | None,
    device: str | None,
    dtype: str | None,
    threads: int | None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> None:
    """The worker process: load the model, then cook generations in one batched loop and run experiments alone."""
    from engine.hardware import machine_facts  # torch only: the dashboard's sidebar waits for these, not the model

    connection.send(Machine(machine_facts()))
    from engine.generate import prepare_request
    from engine.loading import load_model
    from engine.run import build_trace
    from engine.serving import Kitchen, Order
    from engine.tokens import tokenizer_for_pages

    try:
        on_progress = lambda event: connection.send(Loading(event))  # noqa: E731
        loaded = load_model(name, device=device, dtype=dtype, threads=threads, on_progress=on_progress)
    except Exception as err:  # noqa: BLE001 - reported to the parent as a sentence
        connection.send(Failed(None, type(err).__name__, str(err)))  # the worker exits after it
        return
    budget = kv_budget_bytes(loaded)
    connection.send(Ready(loaded.facts, tokenizer_for_pages(loaded.tokenizer), max_batch, budget))
    inbox: queue.Queue = queue.Queue()
    stops: dict[int, threading.Event] = {}
    threading.Thread(target=receive_forever, args=(connection, inbox, stops), daemon=True).start()
    outbox: list = []  # what the current kitchen round produced, sent as one Batch after it
    send = outbox.append
    kitchen = Kitchen(loaded, max_batch=max_batch, kv_budget_bytes=budget, on_step=lambda info: send(Step(info)))
    experiments: list[RunExperiment] = []
    solos: list[tuple[Generate, Request]] = []  # generations on a compiled path, in arrival order
    paths: dict[str, object] = {}  # path name -> its PreparedPath, or the exception preparing it raised
    preparing: set[str] = set()

    def prepare_in_background(name: str) -> None:
        from engine.paths import prepare_path

        try:
            outcome = prepare_path(
                loaded, name, on_progress=lambda said: inbox.put(PathNote(name, preparing_note(name, said)))
            )
        except Exception as err:  # noqa: BLE001 - told, as a sentence, to every request waiting for it
            outcome = err
        inbox.put(PathNote(name, f"The {name} path is ready", outcome))

    def order_for(message: Generate, request: Request) -> Order:
        records: list[TokenRecord] = []

        def on_record(record: TokenRecord) -> None:
            records.append(record)
            send(Record(message.request_id, record))

        def on_end(order: Order, outcome: str, error: str | None) -> None:
            stops.pop(message.request_id, None)
            if outcome == "done":
                send(Finished(message.request_id, build_trace(loaded, request, records, queued_ms=order.queued_ms)))
            elif outcome == "stopped":
                partial = (
                    build_trace(loaded, request, records, queued_ms=order.queued_ms, stopped=True) if records else None
                )
                send(Cancelled(message.request_id, error or "stopped", partial=partial))
            else:
                send(Failed(message.request_id, "EngineError", error or "the step failed"))

        return Order(
            table=message.request_id,
            request=request,
            cancel=stops[message.request_id],
            on_record=on_record,
            on_end=on_end,
            on_queue=lambda place: send(Queued(message.request_id, place)),
        )

    while True:
        # Take every message waiting now (block only when there is nothing to cook), so requests that arrived
        # together join the batch together instead of one per step.
        try:
            ready_solo = any(solo[0].path in paths for solo in solos)
            messages = [inbox.get(block=kitchen.idle and not experiments and not ready_solo)]
        except queue.Empty:
            messages = []  # nothing new: cook
        while not inbox.empty():
            messages.append(inbox.get_nowait())
        if None in messages:
            return  # the parent is gone
        for message in messages:
            if isinstance(message, Generate):
                try:
                    request = prepare_request(loaded, message.prompt, settings=message.settings)
                except Exception as err:  # noqa: BLE001 - one bad request must not end the worker
                    stops.pop(message.request_id, None)
                    connection.send(Failed(message.request_id, type(err).__name__, str(err)))
                else:
                    connection.send(Prepared(message.request_id, request))
                    if message.path == "eager":
                        kitchen.add(order_for(message, request))
                    else:
                        solos.append((message, request))
                        if message.path not in paths and message.path not in preparing:
                            preparing.add(message.path)
                            threading.Thread(target=prepare_in_background, args=(message.path,), daemon=True).start()
                        connection.send(PathProgress(message.request_id, f"Preparing the {message.path} path"))
            elif isinstance(message, PathNote):
                if message.outcome is not None:
                    preparing.discard(message.name)
                    paths[message.name] = message.outcome
                for waiting, _ in solos:
                    if waiting.path == message.name:
                        connection.send(PathProgress(waiting.request_id, message.message))
            elif isinstance(message, RunExperiment):
                experiments.append(message)
            elif isinstance(message, Stop):
                pass  # its flag is set already: the stopped requests are looked at below and between steps
            else:
                connection.send(
                    Failed(
                        getattr(message, "request_id", None),
                        "EngineError",
                        f"the worker does not know the request {message!r:.80}",
                    )
                )
        for stopped in [solo for solo in solos if stops[solo[0].request_id].is_set()]:
            solos.remove(stopped)  # stopped while its path was being prepared: nothing was cooked
            stops.pop(stopped[0].request_id, None)
            connection.send(Cancelled(stopped[0].request_id, "stopped before its decode path was ready"))
        runnable = next((solo for solo in solos if solo[0].path in paths), None)
        # an experiment, or a generation whose path is ready, needs the model alone: the batch drains first
        kitchen.admitting = not experiments and runnable is None
        if experiments and not kitchen.busy:
            run_alone(loaded, experiments.pop(0), connection, stops)
        elif runnable is not None and not kitchen.busy:
            solos.remove(runnable)
            run_on_path(loaded, *runnable, paths[runnable[0].path], connection, stops)
        elif not kitchen.idle:
            try:
                kitchen.step()
            except Exception as err:  # noqa: BLE001 - the step's requests fail; the kitchen goes on
                kitchen.fail_all(f"the model failed mid-step: {type(err).__name__}: {err}")
            if outbox:
                connection.send(Batch(tuple(outbox)) if len(outbox) > 1 else outbox[0])
                outbox.clear()


def run_alone(
    loaded: LoadedModel, message: RunExperiment, connection: Connection, stops: dict[int, threading.Event]
) -> None:
    """Run one experiment with the model to itself, relaying its progress; its stop is checked between measurements."""
    from engine.experiments import run_experiment  # imported on the first experiment, not before the first token

    request_id = message.request_id
    relay = lambda event: connection.send(Measuring(request_id, event))  # noqa: E731 - between measurements
    try:
        result = run_experiment(loaded, message.name, message.options, on_progress=relay, cancel=stops[request_id])
        connection.send(Finished(request_id, result))
    except GenerationCancelled as err:
        connection.send(Cancelled(request_id, str(err), partial=err.partial))
    except Exception as err:  # noqa: BLE001 - one request's failure must not end the worker
        connection.send(Failed(request_id, type(err).__name__, str(err)))
    finally:
        stops.pop(request_id, None)


def preparing_note(name: str, said: str) -> str:
    """A preparation step's sentence, naming the path it prepares."""
    return f"Preparing the {name} path: {said[:1].lower()}{said[1:]}"


def run_on_path(
    loaded: LoadedModel,
    message: Generate,
    request: Request,
    path: object,
    connection: Connection,
    stops: dict[int, threading.Event],
) -> None:
    """Run one generation on its prepared decode path with the model to itself, relaying each record as it is made."""
    from engine.run import build_trace, collect_trace

    request_id = message.request_id
    try:
        if isinstance(path, Exception):  # preparing it failed: the sentence says why (PathUnavailable's own)
            raise EngineError(str(path))
        trace = collect_trace(
            loaded,
            request,
            cancel=stops[request_id],
            on_record=lambda r: connection.send(Record(request_id, r)),
            path=path,
        )
        connection.send(Finished(request_id, trace))
    except GenerationCancelled as err:
        partial = (
            build_trace(loaded, request, list(err.records), stopped=True, path=path.describe()) if err.records else None
        )
        connection.send(Cancelled(request_id, str(err), partial=partial))
    except Exception as err:  # noqa: BLE001 - one request's failure must not end the worker
        connection.send(Failed(request_id, type(err).__name__, str(err)))
    finally:
        stops.pop(request_id, None)


def main() -> None:
    """Entry of `python -m engine.worker EVENTS_FD OPTIONS_JSON` (started by ModelWorker)."""
    events_fd, options = int(sys.argv[1]), json.loads(sys.argv[2])
    try:
        serve(Connection(events_fd), **options)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent went away mid-message (closed dashboard, finished test): nobody is left to tell


def rebuild_error(type_name: str, message: str) -> Exception:
    """The parent-side exception for an error reported by the worker (engine errors keep their type)."""
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, EngineError):
        return cls(message)
    return EngineError(f"the model worker failed: {type_name}: {message}")


# ---- the parent's handle ----------------------------------------------------------------------------------------


class WorkerGone:
    """Parent-side marker in a request's reply queue: the worker process ended."""


class ModelWorker:
    """A model loaded in a separate process; `generate` and `experiment` may be called from many threads at once.

    The process is a plain `python -m engine.worker`, not a multiprocessing spawn: spawn re-imports the
    parent's __main__, which inside Streamlit is the page script itself.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        threads: int | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_step: Callable[[StepInfo], None] | None = None,
    ) -> None:
        events_parent, events_child = socket_pair()
        options = json.dumps(
            {"name": name, "device": device, "dtype": dtype, "threads": threads, "max_batch": max_batch}
        )
        engine_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # so `engine` imports from anywhere
        python_path = os.pathsep.join(filter(None, [engine_root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.worker", str(events_child.fileno()), options],
            pass_fds=(events_child.fileno(),),
            env={**os.environ, "PYTHONPATH": python_path},  # same working directory: relative folders still resolve
        )
        events_child.close()
        self._connection = Connection(events_parent.detach())
        self._send_lock = threading.Lock()
        self._replies: dict[int, queue.Queue] = {}
        self._ids = itertools.count(1)
        self.on_step = on_step
        self.machine: MachineFacts | None = None
        self._machine_known = threading.Event()
        self.settled = threading.Event()  # set once loading has ended: ready, failed or gone
        self._loading: queue.Queue = queue.Queue()  # what the worker says before and while loading, for wait_loaded
        self.facts: ModelFacts | None = None
        self.tokenizer: object | None = None
        self.max_batch, self.kv_budget_bytes = max_batch, 0
        threading.Thread(target=self._dispatch_forever, name="worker-replies", daemon=True).start()

    def is_alive(self) -> bool:
        """True while the worker process runs."""
        return self.process.poll() is None

    def _stopped_error(self) -> EngineError:
        return EngineError(f"the model worker process stopped unexpectedly (exit code {self.process.poll()})")

    def machine_facts(self, *, timeout_s: float) -> MachineFacts | None:
        """The devices and dtypes the worker found (its first message); None if they did not come in time."""
        self._machine_known.wait(timeout_s)
        return self.machine

    def wait_loaded(
        self, on_progress: Callable[[LoadProgress], None] | None = None, *, timeout_s: float | None = None
    ) -> ModelFacts:
        """Block until the model is loaded, passing on its progress; raise its loading error if any, or
        ModelLoadError once `timeout_s` has passed (the worker is left to the caller to close)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                message = self._loading.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise errors.ModelLoadError(
                    f"loading did not finish within {timeout_s:,.0f} s (this kitchen's limit), so it was stopped"
                ) from None
            if isinstance(message, Loading):
                if on_progress is not None:
                    on_progress(message.event)
            elif isinstance(message, Ready):
                self.facts, self.tokenizer = message.facts, message.tokenizer
                self.max_batch, self.kv_budget_bytes = message.max_batch, message.kv_budget_bytes
                return self.facts
            elif isinstance(message, Failed):
                self.process.wait(timeout=10)
                raise rebuild_error(message.error_type, message.message)
            elif isinstance(message, WorkerGone):
                raise self._stopped_error()
            else:
                raise EngineError(f"the model worker sent {type(message).__name__} while loading")

    def _dispatch_forever(self) -> None:
        """The parent's reader thread: loading messages to wait_loaded, each request's messages to the request it
        belongs to, steps to `on_step`."""
        loaded = False
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError, TypeError):  # TypeError: closed under our feet by close()
                self._machine_known.set()
                self.settled.set()
                self._loading.put(WorkerGone())
                for replies in list(self._replies.values()):
                    replies.put(WorkerGone())
                return
            if isinstance(message, Machine):
                self.machine = message.facts
                self._machine_known.set()
                continue
            if not loaded:
                loaded = isinstance(message, Ready)
                self._loading.put(message)
                if loaded or isinstance(message, Failed):
                    self.settled.set()
                continue
            for part in message.messages if isinstance(message, Batch) else (message,):
                if isinstance(part, Step):
                    if self.on_step is not None:
                        self.on_step(part.info)
                elif (replies := self._replies.get(part.request_id)) is not None:
                    replies.put(part)

    def generate(
        self,
        prompt: str,
        settings: GenerationSettings,
        *,
        cancel: CancelFlag | None = None,
        on_request: Callable[[Request], None] | None = None,
        on_record: Callable[[TokenRecord], None] | None = None,
        on_queue: Callable[[QueuePlace], None] | None = None,
        on_table: Callable[[int], None] | None = None,
        path: str = "eager",
        on_path_progress: Callable[[str], None] | None = None,
    ) -> Trace:
        """Run one request in the worker's kitchen (on `path`, engine.paths); records arrive through `on_record`."""
        records: list[TokenRecord] = []

        def handle(message: object) -> None:
            if isinstance(message, Prepared) and on_request is not None:
                on_request(message.request)
            elif isinstance(message, Record):
                records.append(message.record)
                if on_record is not None:
                    on_record(message.record)
            elif isinstance(message, Queued) and on_queue is not None:
                on_queue(message.place)
            elif isinstance(message, PathProgress) and on_path_progress is not None:
                on_path_progress(message.message)

        try:
            return self._exchange(
                lambda request_id: Generate(request_id, prompt, settings, path),
                cancel=cancel,
                handle=handle,
                on_table=on_table,
            )
        except GenerationCancelled as err:
            raise GenerationCancelled(str(err), records=tuple(records), partial=err.partial) from None

    def experiment(
        self,
        name: str,
        options: Options | None = None,
        *,
        cancel: CancelFlag | None = None,
        on_progress: Callable[[ExperimentProgress], None] | None = None,
    ) -> ExperimentResult:
        """Run one experiment in the worker (engine.experiments), once the batch has drained; its progress arrives
        through `on_progress`."""

        def handle(message: object) -> None:
            if isinstance(message, Measuring) and on_progress is not None:
                on_progress(message.event)

        return self._exchange(lambda request_id: RunExperiment(request_id, name, options), cancel=cancel, handle=handle)

    def _exchange(
        self,
        make: Callable[[int], Generate | RunExperiment],
        *,
        cancel: CancelFlag | None,
        handle: Callable[[object], None],
        on_table: Callable[[int], None] | None = None,
    ) -> Trace | ExperimentResult:
        """Send one request and pass its messages to `handle` until it ends: its result, or its error raised here."""
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled("stopped before it started")
        if not self.is_alive():
            raise self._stopped_error()
        request_id, replies = next(self._ids), queue.Queue()
        self._replies[request_id] = replies
        if on_table is not None:
            on_table(request_id)
        try:
            self._send(make(request_id))
            stop_sent = False
            while True:
                if cancel is not None and not stop_sent and cancel.is_set():
                    self._send(Stop(request_id))  # the worker looks at it between two steps
                    stop_sent = True
                try:
                    reply = replies.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    if not self.is_alive():
                        raise self._stopped_error() from None
                    continue
                if isinstance(reply, WorkerGone):
                    self.process.wait(timeout=5)
                    raise self._stopped_error()
                if isinstance(reply, Finished):
                    return reply.result
                if isinstance(reply, Cancelled):
                    raise GenerationCancelled(reply.message, partial=reply.partial)
                if isinstance(reply, Failed):
                    raise rebuild_error(reply.error_type, reply.message)
                handle(reply)
        finally:
            self._replies.pop(request_id, None)

    def _send(self, message: object) -> None:
        try:
            with self._send_lock:
                self._connection.send(message)
        except OSError as err:
            raise self._stopped_error() from err

    def close(self) -> None:
        """Stop the worker process: shutting its socket ends its loop (and stops its runs at the next step)."""
        import socket

        if not self._connection.closed:
            with socket.socket(fileno=os.dup(self._connection.fileno())) as shared:
                shared.shutdown(socket.SHUT_RDWR)  # wakes our reader thread too (a plain close would not)
            self._connection.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


SOCKET_BUFFER_BYTES = 4 << 20  # a few seconds of a crowded kitchen's messages, should the parent fall behind


def socket_pair() -> tuple:
    """Two connected stream sockets (the parent's end, the worker's), with room for the worker to run ahead."""
    import socket

    pair = socket.socketpair()
    for end in pair:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            end.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
    return pair


if __name__ == "__main__":
    # Run the copy imported as `engine.worker`, not this `__main__` one: the messages must pickle as
    # engine.worker.Record and so on, the names the parent knows.
    from engine import worker

    worker.main()
