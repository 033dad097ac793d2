"""Run a model in its own process and talk to it through a pipe.

A dashboard draws charts in Python. On a thread of the same process, the model's forward pass (hundreds of
small Python-level ops) must win the GIL back from the UI after every op, so drawing can land inside a timed
step. Measured here in-process with one model thread, the p90 gap between tokens rose to 325-590 ms while a
page redrew (together with other costs since removed), and a shorter GIL switch interval made it worse. In a
worker process the model shares only CPU cores with the UI, never the interpreter, and its torch thread
setting is its own. `ModelWorker` is the parent's handle: it loads the model over there, then runs one
request or experiment at a time, relaying each record or progress event as it is made.

The messages, every one a frozen dataclass below (pickled over the events socket):

    worker -> parent while loading:   Loading* -> Ready | Failed (then the worker exits)
    parent -> worker, one at a time:  Generate | RunExperiment
    worker -> parent per request:     Started, then
                                      Prepared, Record* (a generation) | Measuring* (an experiment),
                                      then exactly one of Finished | Cancelled | Failed

The cancel handshake: a stop is one byte on a second socket, which the worker checks between two steps or
measurements. Before a request the worker drops any byte meant for an earlier one, then sends `Started`; the
parent sends its byte only after `Started`, so a stop can neither be lost nor hit the next request. The worker
also treats a closed cancel socket (the parent is gone) as a stop.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from engine import errors
from engine.errors import EngineError, GenerationCancelled
from engine.experiments.common import ExperimentProgress, Options
from engine.generate import CancelFlag, Request
from engine.loading import LoadProgress, ModelFacts
from engine.records import TokenRecord
from engine.settings import GenerationSettings
from engine.trace import Trace

if TYPE_CHECKING:
    from engine.experiments.result import ExperimentResult


# ---- the messages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loading:
    """Worker -> parent: how far loading the model is."""

    event: LoadProgress


@dataclass(frozen=True)
class Ready:
    """Worker -> parent: the model is loaded; its facts, and its tokenizer for the page's tokenizer view."""

    facts: ModelFacts
    tokenizer: object


@dataclass(frozen=True)
class Generate:
    """Parent -> worker: run one prompt with these settings."""

    prompt: str
    settings: GenerationSettings


@dataclass(frozen=True)
class RunExperiment:
    """Parent -> worker: run one experiment (engine.experiments) with these options (None: its defaults)."""

    name: str
    options: Options | None


@dataclass(frozen=True)
class Started:
    """Worker -> parent: the request was taken and old stops were dropped; a stop sent now is meant for it."""


@dataclass(frozen=True)
class Prepared:
    """Worker -> parent: the generation's checked, tokenized request."""

    request: Request


@dataclass(frozen=True)
class Record:
    """Worker -> parent: one token's record, sent after the clock stopped."""

    record: TokenRecord


@dataclass(frozen=True)
class Measuring:
    """Worker -> parent: an experiment's progress, sent between two measurements."""

    event: ExperimentProgress


@dataclass(frozen=True)
class Finished:
    """Worker -> parent: the request's result: a Trace for a generation, an ExperimentResult for an experiment."""

    result: Trace | ExperimentResult


@dataclass(frozen=True)
class Cancelled:
    """Worker -> parent: the request stopped between two steps because a stop arrived; an experiment's points
    measured before it come along as a result marked stopped."""

    message: str
    partial: ExperimentResult | None = None


@dataclass(frozen=True)
class Failed:
    """Worker -> parent: loading failed (the worker exits), or one request did (the worker goes on serving)."""

    error_type: str
    message: str


POLL_SECONDS = 0.05  # how often the parent looks at the cancel flag while waiting for the next record


class SocketCancel:
    """The worker's cancel flag: set once the parent writes a byte (or goes away) on the cancel socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.flag = sock, False

    def is_set(self) -> bool:
        if not self.flag and select.select([self.sock], [], [], 0)[0]:
            self.sock.recv(64)  # b"" (the parent is gone) cancels too
            self.flag = True
        return self.flag

    def clear(self) -> None:
        """Forget a cancel meant for an earlier request."""
        while select.select([self.sock], [], [], 0)[0]:
            if not self.sock.recv(64):
                return
        self.flag = False


def serve(
    connection: Connection,
    cancel: SocketCancel,
    name: str | None,
    device: str | None,
    dtype: str | None,
    threads: int | None,
) -> None:
    """The worker process: load the model, then run requests one at a time, sending messages back."""
    from engine.experiments import run_experiment
    from engine.generate import prepare_request
    from engine.loading import load_model
    from engine.run import collect_trace

    try:
        on_progress = lambda event: connection.send(Loading(event))  # noqa: E731
        loaded = load_model(name, device=device, dtype=dtype, threads=threads, on_progress=on_progress)
    except Exception as err:  # noqa: BLE001 - reported to the parent as a sentence
        connection.send(Failed(type(err).__name__, str(err)))  # the worker exits after it
        return
    connection.send(Ready(loaded.facts, loaded.tokenizer))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        cancel.clear()  # a stop meant for an earlier request
        connection.send(Started())  # from now on a stop byte is meant for this request
        try:
            if isinstance(message, Generate):
                request = prepare_request(loaded, message.prompt, settings=message.settings)
                connection.send(Prepared(request))
                relay = lambda record: connection.send(Record(record))  # noqa: E731 - after the clock stopped
                connection.send(Finished(collect_trace(loaded, request, cancel=cancel, on_record=relay)))
            elif isinstance(message, RunExperiment):
                relay = lambda event: connection.send(Measuring(event))  # noqa: E731 - between measurements
                result = run_experiment(loaded, message.name, message.options, on_progress=relay, cancel=cancel)
                connection.send(Finished(result))
            else:
                connection.send(Failed("EngineError", f"the worker does not know the request {message!r:.80}"))
        except GenerationCancelled as err:
            connection.send(Cancelled(str(err), partial=err.partial))
        except Exception as err:  # noqa: BLE001 - one request's failure must not end the worker
            connection.send(Failed(type(err).__name__, str(err)))


def main() -> None:
    """Entry of `python -m engine.worker EVENTS_FD CANCEL_FD OPTIONS_JSON` (started by ModelWorker)."""
    events_fd, cancel_fd, options = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    try:
        serve(Connection(events_fd), SocketCancel(socket.socket(fileno=cancel_fd)), **options)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent went away mid-message (closed dashboard, finished test): nobody is left to tell


def rebuild_error(type_name: str, message: str) -> Exception:
    """The parent-side exception for an error reported by the worker (engine errors keep their type)."""
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, EngineError):
        return cls(message)
    return EngineError(f"the model worker failed: {type_name}: {message}")


class ModelWorker:
    """A model loaded in a separate process; `generate` streams its records back one request at a time.

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
    ) -> None:
        events_parent, events_child = socket.socketpair()
        self._cancel, cancel_child = socket.socketpair()
        options = json.dumps({"name": name, "device": device, "dtype": dtype, "threads": threads})
        fds = (events_child.fileno(), cancel_child.fileno())
        engine_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # so `engine` imports from anywhere
        python_path = os.pathsep.join(filter(None, [engine_root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.worker", str(fds[0]), str(fds[1]), options],
            pass_fds=fds,
            env={**os.environ, "PYTHONPATH": python_path},  # same working directory: relative folders still resolve
        )
        events_child.close()
        cancel_child.close()
        self._connection = Connection(events_parent.detach())
        self._lock = threading.Lock()  # one request at a time
        self.facts: ModelFacts | None = None
        self.tokenizer: object | None = None

    def is_alive(self) -> bool:
        """True while the worker process runs."""
        return self.process.poll() is None

    def _receive(self) -> object:
        try:
            return self._connection.recv()
        except (EOFError, OSError) as err:
            raise self._stopped_error() from err

    def _stopped_error(self) -> EngineError:
        return EngineError(f"the model worker process stopped unexpectedly (exit code {self.process.poll()})")

    def wait_loaded(self, on_progress: Callable[[LoadProgress], None] | None = None) -> ModelFacts:
        """Block until the model is loaded, passing on its progress; raise its loading error if any."""
        while True:
            message = self._receive()
            if isinstance(message, Loading):
                if on_progress is not None:
                    on_progress(message.event)
            elif isinstance(message, Ready):
                self.facts, self.tokenizer = message.facts, message.tokenizer
                return self.facts
            elif isinstance(message, Failed):
                self.process.wait(timeout=10)
                raise rebuild_error(message.error_type, message.message)
            else:
                raise EngineError(f"the model worker sent {type(message).__name__} while loading")

    def generate(
        self,
        prompt: str,
        settings: GenerationSettings,
        *,
        cancel: CancelFlag | None = None,
        on_request: Callable[[Request], None] | None = None,
        on_record: Callable[[TokenRecord], None] | None = None,
    ) -> Trace:
        """Run one request in the worker; records arrive through `on_record` as they are made."""
        records: list[TokenRecord] = []

        def handle(message: object) -> None:
            if isinstance(message, Prepared) and on_request is not None:
                on_request(message.request)
            elif isinstance(message, Record):
                records.append(message.record)
                if on_record is not None:
                    on_record(message.record)

        try:
            return self._exchange(Generate(prompt, settings), cancel=cancel, handle=handle)
        except GenerationCancelled as err:
            raise GenerationCancelled(str(err), records=tuple(records)) from None

    def experiment(
        self,
        name: str,
        options: Options | None = None,
        *,
        cancel: CancelFlag | None = None,
        on_progress: Callable[[ExperimentProgress], None] | None = None,
    ) -> ExperimentResult:
        """Run one experiment in the worker (engine.experiments); its progress arrives through `on_progress`."""

        def handle(message: object) -> None:
            if isinstance(message, Measuring) and on_progress is not None:
                on_progress(message.event)

        return self._exchange(RunExperiment(name, options), cancel=cancel, handle=handle)

    def _exchange(
        self, message: Generate | RunExperiment, *, cancel: CancelFlag | None, handle: Callable[[object], None]
    ) -> Trace | ExperimentResult:
        """Send one request and pass its messages to `handle` until it ends: its result, or its error raised here."""
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled("stopped before it started")
        with self._lock:
            self._connection.send(message)
            started = cancel_sent = False
            while True:
                if started and cancel is not None and not cancel_sent and cancel.is_set():
                    self._cancel.send(b"x")  # the worker checks it between two steps
                    cancel_sent = True
                if not self._connection.poll(POLL_SECONDS):
                    if not self.is_alive():
                        raise self._stopped_error()
                    continue
                reply = self._receive()
                if isinstance(reply, Started):
                    started = True  # the worker has dropped old stops: a stop sent now reaches this request
                elif isinstance(reply, Finished):
                    return reply.result
                elif isinstance(reply, Cancelled):
                    raise GenerationCancelled(reply.message, partial=reply.partial)
                elif isinstance(reply, Failed):
                    raise rebuild_error(reply.error_type, reply.message)
                else:
                    handle(reply)

    def close(self) -> None:
        """Stop the worker process: closing its sockets ends its loop (or stops its run at the next step)."""
        self._connection.close()
        self._cancel.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    # Run the copy imported as `engine.worker`, not this `__main__` one: the messages must pickle as
    # engine.worker.Record and so on, the names the parent knows.
    from engine import worker

    worker.main()
