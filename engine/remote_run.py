"""A remote run: one prompt sent to an OpenAI-compatible server, its streamed tokens collected into a Trace.

The trace has the same contract as a local one, with what a client cannot know left null (token ids, KV-cache
bytes, the server's memory) and a `remote` section: the host (never the key), the model the server named, its
token count checked against ours, how the stream ended. Every time in it is taken at this client, so it
includes the network and the server's queue: the summary says "measured at the client".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import GenerationCancelled
from engine.records import TokenRecord, summarize
from engine.remote import Endpoint, RemoteEnd, RemoteError, RemoteToken, stream_chat
from engine.request import CancelFlag
from engine.served_config import served_model_config
from engine.server_metrics import MetricsSampler, metrics_section, metrics_url
from engine.settings import GenerationSettings
from engine.trace import SCHEMA_VERSION, Trace, now_iso, versions
from engine.units import fmt_ms

CLIENT_CLOCK = "measured at the client: includes the network and the server's queueing"
FINISH_REASONS = {"stop": "eos", "length": "length"}  # OpenAI's finish_reason -> the trace's


def as_record(token: RemoteToken, *, previous_ms: float) -> TokenRecord:
    """A remote token in the trace's record form: the gap since the previous token stands for the step's latency."""
    return TokenRecord(
        step=token.index,
        phase="prefill" if token.index == 0 else "decode",
        token_id=None,
        text=token.text,
        latency_ms=token.t_ms - previous_ms,
        t_ms=token.t_ms,
        kv_cache_bytes=None,
        memory_bytes=None,
        logprob=min(token.logprob, 0.0) if token.logprob is not None else None,
        top=token.top,
        shared_chunk=token.shared_chunk,
    )


def count_check(arrived: int, usage: dict | None) -> str:
    """Our token count against the server's `usage`, in words."""
    if not usage or usage.get("completion_tokens") is None:
        return f"{arrived} tokens arrived; the server sent no usage to check the count against"
    counted = usage["completion_tokens"]
    if counted == arrived:
        return f"{arrived} tokens arrived, as many as the server's usage counts"
    return (
        f"{arrived} tokens arrived but the server's usage counts {counted}: some chunks carried several tokens "
        "without saying so (no logprobs), so their times are per chunk, not per token"
    )


def run_remote_trace(
    endpoint: Endpoint,
    prompt: str,
    *,
    model: str,
    settings: GenerationSettings | None = None,
    on_record: Callable[[TokenRecord], None] | None = None,
    cancel: CancelFlag | None = None,
    timeout_s: float = 60.0,
    sample_metrics: bool = True,
    raw: bool = False,
    local_folders: bool = True,
) -> Trace:
    """Stream one chat completion and return its Trace; RemoteError (with `.trace` when tokens had come) if it broke.

    `local_folders`: a model named by a folder path may have its config read from that folder on this machine
    (engine.served_config; a hosted kitchen turns it off). Config lookups happen after the stream, untimed.

    When `cancel.is_set()` turns true the stream is closed at the next token and GenerationCancelled carries the
    trace of the tokens that had arrived (`partial`, finish reason "stopped"), as a local run's stop does.
    """
    settings = settings or GenerationSettings()
    if not prompt or not prompt.strip():
        raise RemoteError("the prompt is empty: type something for the server to answer")
    records: list[TokenRecord] = []
    end: RemoteEnd | None = None
    sampler = MetricsSampler(url=metrics_url(endpoint.base_url)).start() if sample_metrics else None
    run_started_ns = time.perf_counter_ns()
    stream = stream_chat(endpoint, model=model, messages=[{"role": "user", "content": prompt}],
                         max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                         timeout_s=timeout_s, cancel=cancel, raw_prompt=prompt if raw else None)  # fmt: skip

    def trace_of(end: RemoteEnd | None, error: str | None, metrics: dict | None) -> Trace:
        return remote_trace(endpoint, prompt, model=model, settings=settings, records=records, end=end, error=error,
                            metrics=metrics, raw=raw, local_folders=local_folders)  # fmt: skip

    try:
        for item in stream:
            if isinstance(item, RemoteEnd):
                end = item
                break
            record = as_record(item, previous_ms=records[-1].t_ms if records else 0.0)
            records.append(record)
            if on_record is not None:
                on_record(record)
            if cancel is not None and cancel.is_set():
                break
        if cancel is not None and cancel.is_set() and end is None:
            stream.close()  # closes the connection: the server sees the client go and may stop cooking
            metrics = finish_sampling(sampler, run_started_ns)
            partial = trace_of(None, "stopped by the client", metrics) if records else None
            raise GenerationCancelled(f"stopped after {len(records)} tokens", records=tuple(records), partial=partial)
    except RemoteError as err:
        if records:
            err.trace = trace_of(None, str(err), finish_sampling(sampler, run_started_ns))
        raise
    finally:
        metrics = finish_sampling(sampler, run_started_ns)  # stopped however the run ended
    if not records:
        raise RemoteError(f"{endpoint.host} answered with no tokens at all (finish reason {end.finish_reason!r})")
    return trace_of(end, None, metrics)


def finish_sampling(sampler: MetricsSampler | None, run_started_ns: int) -> dict | None:
    """Stop the metrics sampler (if any) and return its section for the trace."""
    if sampler is None:
        return None
    sampler.stop()
    return metrics_section(sampler, run_started_ns=run_started_ns)


def remote_trace(
    endpoint: Endpoint,
    prompt: str,
    *,
    model: str,
    settings: GenerationSettings,
    records: list[TokenRecord],
    end: RemoteEnd | None,
    error: str | None,
    metrics: dict | None = None,
    raw: bool = False,
    local_folders: bool = True,
) -> Trace:
    """Assemble the trace of a remote run (`end` None: the stream broke, and `error` says how)."""
    usage = end.usage if end is not None else None
    server_model = end.model if end is not None and end.model else model
    finish = FINISH_REASONS.get(end.finish_reason, "length") if end is not None else "stopped"
    return Trace(
        schema_version=SCHEMA_VERSION,
        created_at=now_iso(),
        model={
            "name": server_model[:200],
            "source": f"remote: {endpoint.host}",
            # when its config.json is here, by the name the server gave or the one asked for
            **(
                served_model_config(server_model, local_folders=local_folders)
                or served_model_config(model, local_folders=local_folders)
            ),
        },
        hardware={"device": "remote"},  # the server's device is its own business: never guessed
        versions=versions(),
        settings={  # what the server was sent, nothing it was not
            "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "chat_template": not raw,
        },
        prompt={"text": prompt, "tokens": [], "chat_template_applied": not raw},  # raw: /completions, no template
        events=tuple(records),
        summary=summarize(records, prompt_tokens=0),
        finish_reason=finish,
        remote={
            "host": endpoint.host,
            "server_model": (end.model if end is not None else None),
            "clock": CLIENT_CLOCK,
            "usage": {key: value for key, value in (usage or {}).items() if isinstance(value, int)} or None,
            "complete": end is not None,
            "error": error,
            "count_check": count_check(len(records), usage),
            "shared_chunks": sum(1 for record in records if record.shared_chunk),
            "logprobs": any(record.logprob is not None for record in records),
            "server_timing": end.server_timing if end is not None else None,
            **({"metrics": metrics} if metrics is not None else {}),
        },
    )


@dataclass(frozen=True, kw_only=True)
class TtftClock:
    """One time to first token of a remote run: who measured it, when its clock starts, and what lies inside."""

    measured_by: str
    starts_at: str
    ttft_ms: float
    holds: str


def ttft_clocks(trace: Trace) -> list[TtftClock]:
    """A remote run's times to first token side by side: this client's, and the server's own where it sent them."""
    remote = trace.remote or {}
    clocks = [
        TtftClock(
            measured_by="this client",
            starts_at="the request is sent",
            ttft_ms=trace.summary.ttft_ms,
            holds="the network, the HTTP server, the server's queue, tokenizing, the prefill",
        )  # fmt: skip
    ]
    metrics = remote.get("metrics") or {}
    if metrics.get("server_ttft_ms") is not None:
        clocks.append(
            TtftClock(measured_by=f"{metrics.get('server') or 'the server'}'s /metrics histogram",
                      starts_at="the request arrives at the server", ttft_ms=metrics["server_ttft_ms"],
                      holds="its queue, tokenizing, the prefill (a mean over the requests it finished meanwhile)")
        )  # fmt: skip
    timing = remote.get("server_timing") or {}
    if timing.get("time_to_first_token_ms") is not None:
        queue = timing.get("queue_time_ms")
        clocks.append(
            TtftClock(measured_by="vLLM's per-request metrics", starts_at="the request is scheduled",
                      ttft_ms=timing["time_to_first_token_ms"],
                      holds="the prefill" + (f" (its {fmt_ms(queue)} in the queue before it are not in it)"
                                             if queue is not None else ""))
        )  # fmt: skip
    return clocks


def ttft_story(trace: Trace) -> str | None:
    """Where this client's time to first token went, from the server's own figures (None when it sent none)."""
    client = trace.summary.ttft_ms
    remote = trace.remote or {}
    timing = remote.get("server_timing") or {}
    scheduled, queue = timing.get("time_to_first_token_ms"), timing.get("queue_time_ms")
    arrival = (remote.get("metrics") or {}).get("server_ttft_ms")
    between = "the network and the HTTP server"
    if scheduled is not None and queue is not None:
        inside = queue + scheduled
        said = f"{fmt_ms(queue)} in the server's queue and {fmt_ms(scheduled)} from being scheduled to the first token"
    elif arrival is not None:
        inside, said = arrival, f"{fmt_ms(arrival)} on the server's own clock, from arrival (its histogram's mean)"
    elif scheduled is not None:
        inside, said = scheduled, f"{fmt_ms(scheduled)} from being scheduled to the first token"
        between = "the network, the HTTP server and the server's queue"
    else:
        return None
    if inside > client:
        return (
            f"The server's figures ({said}) add up to more than the {fmt_ms(client)} this client waited: their "
            "clocks start and stop at other points than ours, so they do not split it."
        )
    return (
        f"Of the {fmt_ms(client)} this client waited for its first token, {said}; the other "
        f"{fmt_ms(client - inside)} were {between}."
    )
