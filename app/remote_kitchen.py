"""The other kitchen: an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, Ollama, transformers serve).

The sidebar's "a server" choice names its address, a model the server lists and, when it needs one, a key kept
only in this browser session's memory (never written: the trace records the host alone). A prompt sent there is a
`RemoteJob`: streamed on a thread of its own (engine.remote_run), each token timed at this client as it arrives,
and drawn by the live page from its records exactly like a local run. Nothing here touches the local model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from app.hosting import check_server_allowed, kitchen_config, offered_servers
from app.kitchen import ExperimentJob, GenerationJob, Job, keep
from app.state import keep_offered
from app.text import literal
from engine import EngineError, GenerationCancelled
from engine.experiments import ExperimentProgress, default_result_path, run_experiment, save_result
from engine.experiments.server_load import ServerLoadOptions
from engine.remote import Endpoint, RemoteError, list_models, parse_endpoint
from engine.remote_run import CLIENT_CLOCK, run_remote_trace
from engine.trace import default_remote_trace_path, save_trace

THIS_MACHINE, A_SERVER = "this machine", "a server"
DEFAULT_URL = "http://127.0.0.1:8000/v1"  # vLLM's and transformers serve's usual port (Ollama: 11434)
LISTING_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServerChoice:
    """The server a visitor picked: its address, a model it serves, and the key (held in this session only)."""

    url: str
    model: str
    api_key: str | None = None

    def check(self) -> None:
        """Refuse early, in a sentence, a choice that cannot be sent (no model, a bad or not-offered address)."""
        if not self.model:
            raise RemoteError("name the server's model in the sidebar (its /v1/models list, or the name it knows)")
        self.endpoint()

    def endpoint(self) -> Endpoint:
        """The checked endpoint (RemoteError for a malformed address; SettingsError for one not offered here)."""
        check_server_allowed(self.url)
        return parse_endpoint(self.url, api_key=self.api_key)


def start_on_own_thread(job: Job, work: Callable[[], None], *, name: str) -> None:
    """Mark a server's job running and do its work on a thread of its own (the page redraws from the job meanwhile)."""
    job.state, job.started_s = "running", time.monotonic()
    job.cooking_since_s = job.started_s
    threading.Thread(target=work, name=name, daemon=True).start()


@dataclass(eq=False, kw_only=True)
class RemoteJob(GenerationJob):
    """A prompt sent to a server: streamed on its own thread, timed at the client, saved under remote/."""

    server: ServerChoice
    local_folders: bool = False  # may a model named by a folder path have its config read here (set by start)

    @property
    def clock(self) -> str:
        """Where its times are taken: at this client, so they include the network and the server's queue."""
        return CLIENT_CLOCK

    def trace_host(self) -> str:
        """host:port of the server (what the trace records), or the address as typed when it does not parse."""
        try:
            return parse_endpoint(self.server.url).host
        except RemoteError:
            return self.server.url[:100]

    def start(self) -> None:
        """Begin streaming on a thread of its own (the page redraws from `records` meanwhile)."""
        self.local_folders = not kitchen_config().hosted  # hosted: a typed name never reads this machine's folders
        start_on_own_thread(self, self.stream, name="remote-job")

    def stream(self) -> None:
        """The thread's work: every failure becomes the job's one-sentence error, with the tokens so far kept."""
        error, outcome = None, "done"
        try:
            self.trace = run_remote_trace(
                self.server.endpoint(),
                self.prompt,
                model=self.server.model,
                settings=self.settings,
                on_record=self.records.append,
                cancel=self,
                local_folders=self.local_folders,
            )
        except GenerationCancelled as err:
            self.trace, outcome = err.partial, "stopped"
        except RemoteError as err:
            self.trace, error = err.trace, str(err)
        except EngineError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - a thread's failure must reach the page as a sentence
            error = f"the run failed unexpectedly: {type(err).__name__}: {err}"
        if self.trace is not None:
            try:
                self.saved_to = keep(save_trace(self.trace, default_remote_trace_path()), owner=self.owner)
            except OSError as err:  # a full disk must not leave the job "running" for ever
                error = error or f"the answer arrived but could not be saved ({err.strerror or err})"
        if error is not None:
            kept = f" The {len(self.records)} tokens that arrived are kept on the Runs page." if self.saved_to else ""
            error = f"{error}.{kept}"
        self.end(error=error, outcome=outcome)


@dataclass(eq=False, kw_only=True)
class RemoteSweepJob(ExperimentJob):
    """The load sweep against the visitor's server: run on its own thread (no local model), saved like any result."""

    server: ServerChoice

    def start(self) -> None:
        """Begin the sweep on a thread of its own (the page shows its progress meanwhile)."""
        start_on_own_thread(self, self.sweep, name="remote-sweep")

    def sweep(self) -> None:
        """The thread's work: streams at each level, the result saved; every failure a sentence."""
        error, outcome = None, "done"

        def accept(event: ExperimentProgress) -> None:
            self.progress = event

        try:
            self.server.endpoint()  # checked again here: the allow-list may have changed since the page drew
            self.result = run_experiment(None, self.experiment, self.options, cancel=self, on_progress=accept)
        except GenerationCancelled as err:
            self.result, outcome = err.partial, "stopped"
        except EngineError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - a thread's failure must reach the page as a sentence
            error = f"the sweep failed unexpectedly: {type(err).__name__}: {err}"
        if self.result is not None:
            try:
                saved = save_result(self.result, default_result_path(self.experiment))
                self.saved_to = keep(saved, owner=self.owner)
            except OSError as err:
                error = error or f"the sweep finished but could not be saved ({err.strerror or err})"
        self.end(error=error, outcome=outcome)


SERVER_JOBS = (RemoteJob, RemoteSweepJob)  # cooked by a server on threads of their own, never by the local model


def sweep_options(server: ServerChoice, *, concurrency: tuple[int, ...], max_new_tokens: int) -> ServerLoadOptions:
    """The load sweep's options for the visitor's server (the key travels in memory, never into the result)."""
    return ServerLoadOptions(endpoint=server.url, server_model=server.model, api_key=server.api_key or "",
                             concurrency=concurrency, max_new_tokens=max_new_tokens)  # fmt: skip


@st.cache_data(show_spinner=False, ttl=30, max_entries=32)
def server_models(url: str, api_key: str | None) -> tuple[list[str], str | None]:
    """The models a server lists and None, or [] and why they could not be read (both kept for 30 s, so a server
    that does not answer costs one timeout, not one per redraw)."""
    try:
        return list_models(parse_endpoint(url, api_key=api_key), timeout_s=LISTING_TIMEOUT_S), None
    except EngineError as err:  # RemoteError included
        return [], str(err)


def server_caption(server: ServerChoice) -> str:
    """What a run on a server sends and records, under the settings."""
    return (
        f"Cooking on the server's {server.model or '(no model named)'}: it is sent the prompt as a chat turn, the max "
        "new tokens and the temperature (seed, KV cache and the decode path are this machine's settings). Every "
        "time is taken here as the tokens arrive, so it includes the network and the server's queue."
    )


def kitchen_kinds() -> list[str]:
    """The kitchens offered: this machine, and a server unless a hosted kitchen lists none."""
    servers = offered_servers()
    return [THIS_MACHINE] if servers == () else [THIS_MACHINE, A_SERVER]


def server_inputs(area: object) -> None:
    """The server's address, key and model pickers (hosted mode: a select box over the configured servers)."""
    servers = offered_servers()
    if servers is None:
        area.text_input("Server address", DEFAULT_URL, key="sidebar_server_url",
                        help="An OpenAI-compatible base address ending in /v1 (vLLM, SGLang, TGI, llama.cpp's "
                        "server, Ollama at http://host:11434/v1, transformers serve).")  # fmt: skip
    else:
        keep_offered("sidebar_server_url", servers)
        area.selectbox("Server", servers, key="sidebar_server_url", help="The servers this kitchen's host offers.")
    area.text_input(
        "API key (if the server needs one)",
        key="sidebar_server_key",
        type="password",
        help="Kept in this browser session's memory only: never saved, never written into a trace.",
    )
    url, key = st.session_state.get("sidebar_server_url", ""), st.session_state.get("sidebar_server_key") or None
    models, problem = server_models(url, key)
    if problem:
        area.warning(f"The server's models could not be read: {literal(problem)}.")
    if models:
        keep_offered("sidebar_server_model", models)
        area.selectbox("Server model", models, key="sidebar_server_model", help="What the server's /v1/models lists.")
    else:
        area.text_input("Server model", key="sidebar_server_model", help="The name the server knows the model by.")


def current_server() -> ServerChoice | None:
    """The server the visitor picked, or None when they cook on this machine."""
    if st.session_state.get("sidebar_kitchen") != A_SERVER or A_SERVER not in kitchen_kinds():
        return None
    return ServerChoice(
        url=str(st.session_state.get("sidebar_server_url") or ""),
        model=str(st.session_state.get("sidebar_server_model") or "").strip(),
        api_key=st.session_state.get("sidebar_server_key") or None,
    )
