"""A remote kitchen: stream one chat completion from an OpenAI-compatible server and time each token at the client.

vLLM, SGLang, TGI, llama.cpp's server, Ollama and `transformers serve` all stream `/v1/chat/completions` as
server-sent events, one JSON chunk per event and `[DONE]` at the end. Each token's time is taken here, the moment
its chunk arrives, so it includes the network and the server's queueing (unlike the server's own figures). A chunk
that carries several tokens (known from its logprobs) has its time spread evenly since the previous chunk, and
each of those tokens says so (`shared_chunk`). Every failure a user can act on is one sentence in a RemoteError,
which keeps the tokens that had arrived.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from httpx_sse import EventSource, SSEError

from engine.errors import EngineError
from engine.records import Alternative
from engine.request import CancelFlag

TOP_LOGPROBS = 5  # alternatives asked for per token (servers that support logprobs send them)
CANCEL_POLL_S = 0.1  # how soon a Stop shuts the connection while waiting for the server
MAX_LISTED_MODELS = 200  # a server listing more (a hub proxy) is cut: the sidebar offers a pick, not a catalogue


@dataclass(frozen=True, kw_only=True)
class RemoteToken:
    """One token as it arrived from the server."""

    index: int  # 0 = the first token
    text: str
    t_ms: float  # client clock: request sent -> this token's chunk arrived (split evenly within a shared chunk)
    chunk: int  # which content chunk carried it (0 = the first)
    shared_chunk: bool  # its chunk carried several tokens, so its time is a share, not its own arrival
    logprob: float | None  # None: the server sent no logprobs
    top: tuple[Alternative, ...] = ()  # the server's top alternatives (empty without logprobs)
    end_token: bool = False  # the end-of-sequence token: no text, known from the finish chunk and the usage count


@dataclass(frozen=True, kw_only=True)
class RemoteEnd:
    """How the stream ended: the server's finish reason, its token count, and the model it named."""

    finish_reason: str | None
    usage: dict | None  # the server's usage (prompt_tokens, completion_tokens) when it sent one
    model: str | None
    server_timing: dict | None = None  # vLLM's per-request `metrics` (--enable-per-request-metrics), when sent


# vLLM's per-request timing fields (docs/features/per_request_metrics.md): TTFT from the request being scheduled,
# its time in the queue before that, decode time, mean ITL, tokens/s. Only these, and only as numbers, are kept.
SERVER_TIMING_FIELDS = (
    "time_to_first_token_ms",
    "queue_time_ms",
    "generation_time_ms",
    "mean_itl_ms",
    "tokens_per_second",
)


def server_timing(chunk: dict) -> dict | None:
    """The known per-request timing numbers of a chunk's `metrics` object (vLLM's), or None when it has none."""
    metrics = chunk.get("metrics")
    if not isinstance(metrics, dict):
        return None
    kept = {
        name: float(metrics[name])
        for name in SERVER_TIMING_FIELDS
        if isinstance(metrics.get(name), int | float)
        and not isinstance(metrics[name], bool)
        and math.isfinite(metrics[name])
        and metrics[name] >= 0
    }
    return kept or None


class RemoteError(EngineError):
    """A remote run that could not finish; the message is one sentence and `tokens` keeps what had arrived."""

    def __init__(self, message: str, *, tokens: tuple[RemoteToken, ...] = ()) -> None:
        super().__init__(message)
        self.tokens = tokens
        self.trace = None  # engine.remote_run sets the partial trace here when tokens had arrived


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """An OpenAI-compatible base URL (ending in /v1) and the key to send, which is never written anywhere."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        """host:port only: what a trace may record (no scheme credentials, path or key)."""
        parts = urlsplit(self.base_url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)

    def headers(self) -> dict[str, str]:
        """The request headers: the key as a bearer token when there is one."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def parse_endpoint(url: str, *, api_key: str | None = None) -> Endpoint:
    """Check a server URL early (http or https, a host, no credentials in it) and normalise it."""
    text = (url or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"{url!r} is not a server address: write it like http://localhost:8000/v1")
    if parts.username or parts.password:
        raise RemoteError("the server address must not contain a user name or password: pass the key separately")
    return Endpoint(base_url=text, api_key=api_key or None)


def list_models(endpoint: Endpoint, *, timeout_s: float = 5.0) -> list[str]:
    """The model names the server offers (GET /models); RemoteError says in a sentence why they could not be read."""
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), headers=endpoint.headers()) as client:
            response = client.get(f"{endpoint.base_url}/models")
            if response.status_code != 200:
                raise RemoteError(status_sentence(response, endpoint=endpoint, model="(listing models)"))
            body = response.json()
    except httpx.HTTPError as err:
        raise RemoteError(transport_sentence(err, endpoint=endpoint, arrived=0)) from None
    except ValueError:
        raise RemoteError(f"{endpoint.host} answered /models with something that is not JSON") from None
    listed = body.get("data") if isinstance(body, dict) else None
    if not isinstance(listed, list):
        raise RemoteError(f"{endpoint.host} answered /models without a list of models (no 'data')")
    names = [str(item["id"])[:200] for item in listed if isinstance(item, dict) and item.get("id")]
    return sorted(dict.fromkeys(names))[:MAX_LISTED_MODELS]


def chat_body(*, model: str, messages: list[dict], max_tokens: int, temperature: float, logprobs: bool) -> dict:
    """The request: a streamed chat completion asking for usage at the end (and logprobs, when wanted)."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if logprobs:
        body |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
    return body


def stream_chat(
    endpoint: Endpoint,
    *,
    model: str,
    messages: list[dict],
    max_tokens: int,
    temperature: float = 0.0,
    logprobs: bool = True,
    timeout_s: float = 30.0,
    cancel: CancelFlag | None = None,
    raw_prompt: str | None = None,
) -> Iterator[RemoteToken | RemoteEnd]:
    """Yield each token as its chunk arrives, then one RemoteEnd; RemoteError says in a sentence what went wrong.

    When `cancel.is_set()` turns true the connection is shut at once, even while waiting for a token, and the
    stream ends with no RemoteEnd (the caller knows it cancelled). `raw_prompt`: a plain text completion
    (/completions, no chat template) instead of the chat `messages`.
    """
    body = chat_body(model=model, messages=messages, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs)
    route = "chat/completions"
    if raw_prompt is not None:  # the legacy completions API: a prompt string, logprobs as a number of alternatives
        body = {key: value for key, value in body.items() if key not in ("messages", "logprobs", "top_logprobs")}
        body |= {"prompt": raw_prompt, **({"logprobs": TOP_LOGPROBS} if logprobs else {})}
        route = "completions"
    tokens: list[RemoteToken] = []
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), headers=endpoint.headers()) as client:
            sent_ns = time.perf_counter_ns()
            with client.stream("POST", f"{endpoint.base_url}/{route}", json=body) as response:
                if response.status_code != 200:
                    raise RemoteError(status_sentence(response, endpoint=endpoint, model=model))
                watching = shut_when_cancelled(response, cancel)
                try:
                    yield from read_events(response, sent_ns=sent_ns, tokens=tokens)
                finally:
                    watching.set()
    except RemoteError as err:
        if cancel is not None and cancel.is_set():
            return  # the shut connection's own complaint: the stream was stopped here, not broken there
        raise RemoteError(str(err), tokens=tuple(tokens)) from None
    except httpx.HTTPError as err:
        if cancel is not None and cancel.is_set():
            return
        sentence = transport_sentence(err, endpoint=endpoint, arrived=len(tokens))
        raise RemoteError(sentence, tokens=tuple(tokens)) from None


def shut_when_cancelled(response: httpx.Response, cancel: CancelFlag | None) -> threading.Event:
    """Watch `cancel` on a small thread and shut the response's socket when it is set (a read blocked waiting for
    the server's next token then returns at once); set the returned event to stop watching."""
    done = threading.Event()
    stream = response.extensions.get("network_stream")
    if cancel is None or stream is None:
        return done

    def watch() -> None:
        while not done.wait(CANCEL_POLL_S):
            if cancel.is_set():
                connection = stream.get_extra_info("socket")
                if connection is not None:
                    try:
                        connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # already closed
                return

    threading.Thread(target=watch, name="remote-cancel", daemon=True).start()
    return done


def read_events(
    response: httpx.Response, *, sent_ns: int, tokens: list[RemoteToken]
) -> Iterator[RemoteToken | RemoteEnd]:
    """Turn the server-sent events into tokens (appended to `tokens` as they come) and the closing RemoteEnd.

    The stream is complete at `[DONE]`, or when it closes after a chunk with a finish reason (`transformers
    serve` sends no `[DONE]`); closing with neither means the server stopped part-way.
    """
    finish, usage, model, chunks, last_ms, finish_ms, done = None, None, None, 0, 0.0, None, False
    timing = None
    try:
        for event in EventSource(response).iter_sse():
            arrived_ms = (time.perf_counter_ns() - sent_ns) / 1e6
            if event.data.strip() == "[DONE]":
                done = True
                break
            chunk = parse_chunk(event.data, arrived=len(tokens))
            model = chunk.get("model") or model
            usage = chunk.get("usage") or usage
            timing = server_timing(chunk) or timing
            for choice in chunk.get("choices") or []:
                pieces = chunk_tokens(choice)
                for share, (text, logprob, top) in enumerate(pieces, start=1):
                    t_ms = last_ms + (arrived_ms - last_ms) * share / len(pieces)
                    token = RemoteToken(index=len(tokens), text=text, t_ms=t_ms, chunk=chunks,
                                        shared_chunk=len(pieces) > 1, logprob=logprob, top=top)  # fmt: skip
                    tokens.append(token)
                    yield token
                if pieces:
                    chunks, last_ms = chunks + 1, arrived_ms
                if choice.get("finish_reason"):
                    finish, finish_ms = choice["finish_reason"], arrived_ms
    except SSEError as err:
        raise RemoteError(f"the server did not answer with a stream of events ({err})") from None
    if finish is None and not done:
        raise RemoteError(
            f"the stream ended without a finish reason or [DONE] after {len(tokens)} tokens: the server stopped "
            "part-way (crashed or cut off)"
        )
    if finish == "stop" and finish_ms is not None and (usage or {}).get("completion_tokens") == len(tokens) + 1:
        # The server counted one token more than it sent as text: the end-of-sequence token the model chose, which
        # arrived as the finish chunk. A local trace records it too (as a step with empty text).
        end = RemoteToken(index=len(tokens), text="", t_ms=finish_ms, chunk=chunks, shared_chunk=False,
                          logprob=None, top=(), end_token=True)  # fmt: skip
        tokens.append(end)
        yield end
    yield RemoteEnd(finish_reason=finish, usage=usage, model=model, server_timing=timing)


def parse_chunk(data: str, *, arrived: int) -> dict:
    """One event's JSON; a server's error event or anything that is not a chunk becomes a RemoteError."""
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise RemoteError(f"the server sent a chunk that is not JSON after {arrived} tokens: {data[:80]!r}") from None
    if not isinstance(chunk, dict):
        raise RemoteError(f"the server sent a chunk that is not a JSON object after {arrived} tokens")
    if "error" in chunk:
        raise RemoteError(f"the server reported an error mid-stream after {arrived} tokens: {error_text(chunk)}")
    return chunk


def chunk_tokens(choice: dict) -> list[tuple[str, float | None, tuple[Alternative, ...]]]:
    """The tokens a chunk's choice carries: one per logprobs entry when sent, else its text as one token."""
    logprobs = choice.get("logprobs") or {}
    if isinstance(logprobs, dict) and logprobs.get("tokens"):  # the completions API's form: parallel lists
        tops = logprobs.get("top_logprobs") or []
        values = logprobs.get("token_logprobs") or []
        return [
            (
                str(token),
                float(values[index]) if index < len(values) and values[index] is not None else None,
                tuple(Alternative(token=str(alt), prob=probability(value)) for alt, value in alternatives(tops, index)),
            )
            for index, token in enumerate(logprobs["tokens"])
        ]
    entries = (logprobs.get("content") if isinstance(logprobs, dict) else None) or []
    if entries:
        return [
            (
                str(entry.get("token", "")),
                float(entry["logprob"]) if entry.get("logprob") is not None else None,
                tuple(
                    Alternative(token=str(alt.get("token", "")), prob=probability(alt.get("logprob")))
                    for alt in entry.get("top_logprobs") or []
                ),
            )
            for entry in entries
        ]
    text = (choice.get("delta") or {}).get("content") or (choice.get("text") or "")
    return [(str(text), None, ())] if text else []


def alternatives(tops: list, index: int) -> list[tuple[object, object]]:
    """The (token, logprob) pairs the completions API sent for one token (a dict per token), or none."""
    top = tops[index] if index < len(tops) else None
    return list(top.items()) if isinstance(top, dict) else []


def probability(logprob: object) -> float:
    """A logprob as a probability (0 when missing or not a number)."""
    try:
        return math.exp(float(logprob))
    except (TypeError, ValueError):
        return 0.0


def error_text(body: object) -> str:
    """The message inside an OpenAI-style error body, short."""
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:200]
    return str(body)[:200]


def status_sentence(response: httpx.Response, *, endpoint: Endpoint, model: str) -> str:
    """One sentence for an HTTP status other than 200, saying what the user can do."""
    response.read()
    try:
        detail = error_text(response.json())
    except ValueError:
        detail = response.text[:200]
    code = response.status_code
    if code in (401, 403):
        return f"{endpoint.host} refused the request ({code}): check the API key ({detail})"
    if code == 404:
        return f"{endpoint.host} has no model {model!r} or no /chat/completions there (404): {detail}"
    if code == 429:
        return f"{endpoint.host} is limiting requests (429): wait and try again ({detail})"
    if code >= 500:
        return f"{endpoint.host} failed on its side ({code}): {detail}"
    return f"{endpoint.host} rejected the request ({code}): {detail}"


def transport_sentence(err: httpx.HTTPError, *, endpoint: Endpoint, arrived: int) -> str:
    """One sentence for a connection that failed, timed out or broke."""
    text = str(err) or type(err).__name__
    if isinstance(err, httpx.ConnectError):
        if any(sign in text for sign in ("Name or service not known", "name resolution", "nodename nor servname")):
            return f"could not find the host {endpoint.host.split(':')[0]!r} (DNS): check the address"
        return f"could not connect to {endpoint.host}: {text} (is the server running, on that port?)"
    if isinstance(err, httpx.TimeoutException):
        return f"{endpoint.host} did not answer in time after {arrived} tokens ({type(err).__name__})"
    if arrived:
        return f"the stream from {endpoint.host} broke after {arrived} tokens: {text}"
    return f"the connection to {endpoint.host} failed: {text}"
