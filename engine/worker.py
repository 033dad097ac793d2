"""Run a model in its own process and talk to it through a pipe.

A dashboard draws charts in Python. On a thread of the same process, the model's forward pass (hundreds of
small Python-level ops) must win the GIL back from the UI after every op, so drawing can land inside a timed
step. Measured here in-process with one model thread, the p90 gap between tokens rose to 325-590 ms while a
page redrew (together with other costs since removed), and a shorter GIL switch interval made it worse. In a
worker process the model shares only CPU cores with the UI, never the interpreter, and its torch thread
setting is its own. `ModelWorker` is the parent's handle: it loads the model over there, then runs one
request or experiment at a time, relaying each record or progress event as it is made.
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
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from engine import errors
from engine.errors import EngineError, GenerationCancelled
from engine.experiments.common import ExperimentProgress
from engine.generate import CancelFlag, Request
from engine.loading import LoadProgress, ModelFacts
from engine.records import TokenRecord
from engine.settings import GenerationSettings
from engine.trace import Trace

if TYPE_CHECKING:
    from engine.experiments.result import ExperimentResult

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


def serve(connection: Connection, cancel: SocketCancel, name: str | None, device: str | None, dtype: str | None, threads: int | None) -> None:
    """The worker process: load the model, then run requests one at a time, sending events back."""
    from engine.experiments import run_experiment
    from engine.generate import prepare_request
    from engine.loading import load_model
    from engine.run import collect_trace

    try:
        loaded = load_model(name, device=device, dtype=dtype, threads=threads, on_progress=lambda event: connection.send(("progress", event)))
    except Exception as err:  # noqa: BLE001 - reported to the parent as a sentence
        connection.send(("error", type(err).__name__, str(err)))
        return
    connection.send(("ready", loaded.facts, loaded.tokenizer))
    while True:
        try:
            kind, *arguments = connection.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        cancel.clear()  # a stop meant for an earlier request
        connection.send(("started", kind))  # from now on a stop byte is meant for this request
        try:
            if kind == "generate":
                prompt, settings = arguments
                request = prepare_request(loaded, prompt, settings=settings)
                connection.send(("request", request))
                relay = lambda record: connection.send(("record", record))  # noqa: E731 - after the clock stopped
                connection.send(("done", collect_trace(loaded, request, cancel=cancel, on_record=relay)))
            elif kind == "experiment":
                name, options = arguments
                relay = lambda event: connection.send(("progress", event))  # noqa: E731 - between measurements
                connection.send(("done", run_experiment(loaded, name, options, on_progress=relay, cancel=cancel)))
            else:
                connection.send(("error", "EngineError", f"the worker does not know the request {kind!r}"))
        except GenerationCancelled as err:
            connection.send(("cancelled", str(err)))
        except Exception as err:  # noqa: BLE001 - one request's failure must not end the worker
            connection.send(("error", type(err).__name__, str(err)))


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

    def __init__(self, name: str | None = None, *, device: str | None = None, dtype: str | None = None, threads: int | None = None) -> None:
        events_parent, events_child = socket.socketpair()
        self._cancel, cancel_child = socket.socketpair()
        options = json.dumps({"name": name, "device": device, "dtype": dtype, "threads": threads})
        fds = (events_child.fileno(), cancel_child.fileno())
        engine_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # so `engine` imports from anywhere
        python_path = os.pathsep.join(filter(None, [engine_root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.worker", str(fds[0]), str(fds[1]), options],
            pass_fds=fds,
            env={**os.environ, "PYTHONPATH": python_path},  # same working directory: relative model folders still resolve
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

    def _receive(self) -> tuple:
        try:
            return self._connection.recv()
        except (EOFError, OSError) as err:
            raise EngineError(f"the model worker process stopped unexpectedly (exit code {self.process.poll()})") from err

    def wait_loaded(self, on_progress: Callable[[LoadProgress], None] | None = None) -> ModelFacts:
        """Block until the model is loaded, passing on its progress; raise its loading error if any."""
        while True:
            message = self._receive()
            if message[0] == "progress":
                if on_progress is not None:
                    on_progress(message[1])
            elif message[0] == "ready":
                self.facts, self.tokenizer = message[1], message[2]
                return self.facts
            else:
                self.process.wait(timeout=10)
                raise rebuild_error(message[1], message[2])

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

        def handle(kind: str, payload: object) -> None:
            if kind == "request" and on_request is not None:
                on_request(payload)
            elif kind == "record":
                records.append(payload)
                if on_record is not None:
                    on_record(payload)

        try:
            return self._exchange(("generate", prompt, settings), cancel=cancel, handle=handle)
        except GenerationCancelled as err:
            raise GenerationCancelled(str(err), records=tuple(records)) from None

    def experiment(
        self,
        name: str,
        options: object = None,
        *,
        cancel: CancelFlag | None = None,
        on_progress: Callable[[ExperimentProgress], None] | None = None,
    ) -> "ExperimentResult":
        """Run one experiment in the worker (engine.experiments); its progress arrives through `on_progress`."""

        def handle(kind: str, payload: object) -> None:
            if kind == "progress" and on_progress is not None:
                on_progress(payload)

        return self._exchange(("experiment", name, options), cancel=cancel, handle=handle)

    def _exchange(self, message: tuple, *, cancel: CancelFlag | None, handle: Callable[[str, object], None]) -> object:
        """Send one request and pass its events to `handle` until it ends: its result, or its error raised here."""
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
                        raise EngineError(f"the model worker process stopped unexpectedly (exit code {self.process.poll()})")
                    continue
                kind, *payload = self._receive()
                if kind == "started":
                    started = True  # the worker has cleared old stops: a stop sent now reaches this request
                elif kind == "done":
                    return payload[0]
                elif kind == "cancelled":
                    raise GenerationCancelled(payload[0])
                elif kind == "error":
                    raise rebuild_error(payload[0], payload[1])
                else:
                    handle(kind, payload[0])

    def close(self) -> None:
        """Stop the worker process."""
        self._connection.close()
        self._cancel.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    main()
