"""A server under load: N streams at once against an OpenAI-compatible server, throughput against each one's wait.

The batching experiment asks this machine's model; this asks the team's own server (vLLM, SGLang, TGI,
llama.cpp, Ollama, transformers serve) the same question: at each concurrency level N, N identical chat
completions are streamed at once (one thread each, engine.remote's client), every token timed at this client.
A row per level: TTFT and ITL percentiles over every stream, the aggregate tokens/s (all tokens that arrived
÷ the level's wall time), the median stream's own decode speed, and how many streams failed. A server that
batches raises the aggregate with N while each stream slows a little; one that serves a stream at a time keeps
the aggregate flat while TTFT grows with the queue. One short request warms the server up first, unmeasured (a
server's first request may load or compile). No local model is loaded.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from engine.errors import SettingsError
from engine.experiments.base import Measured, Options, Progress, require_positive
from engine.records import percentile
from engine.remote import Endpoint, RemoteEnd, RemoteError, parse_endpoint, stream_chat
from engine.remote_run import CLIENT_CLOCK
from engine.request import CancelFlag

MAX_CONCURRENCY = 64  # streams at once: more would be a load test of this client, not an explainer's sweep
WARMUP_TOKENS = 4  # the unmeasured first request: a server's first one may load or compile (transformers serve
# --continuous-batching took 9 s to its first token, then 0.4 s)
FLAT = 1.2  # aggregate throughput under this multiple of one stream's: the server did not serve streams together


@dataclass(frozen=True, kw_only=True)
class ServerLoadOptions(Options):
    """Which server and model, how many streams at once, and what each one asks for."""

    endpoint: str = field(default="", metadata={"help": "the server's OpenAI-compatible base address, e.g. "
                                                "http://localhost:8000/v1"})  # fmt: skip
    server_model: str = field(default="", metadata={"help": "the model's name on the server (its /v1/models)"})
    api_key_env: str = field(default="", metadata={"help": "an environment variable holding the API key, if any"})
    api_key: str = field(default="", repr=False, metadata={"secret": True})  # the dashboard's: never saved or printed
    concurrency: tuple[int, ...] = field(default=(1, 2, 4, 8, 16), metadata={"help": "streams sent at once"})
    prompt: str = field(
        default="Write a short story about a chef who cooks soup.", metadata={"help": "each stream's prompt"}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "tokens each stream asks for"})
    timeout_s: float = field(default=120.0, metadata={"help": "how long one stream may wait for its next token"})

    def check(self) -> None:
        require_positive(concurrency=self.concurrency, max_new_tokens=self.max_new_tokens)
        if max(self.concurrency) > MAX_CONCURRENCY:
            raise SettingsError(f"concurrency goes up to {MAX_CONCURRENCY} streams at once here")
        if not self.server_model.strip():
            raise SettingsError("name the server's model (--server-model, as its /v1/models lists it)")
        if not self.prompt.strip():
            raise SettingsError("the prompt is empty")
        if not self.timeout_s > 0:
            raise SettingsError(f"the timeout must be above 0 seconds, got {self.timeout_s!r}")
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise SettingsError(f"the variable {self.api_key_env} is not set: it should hold the API key")
        self.server()

    def remote_model(self) -> dict:
        """The model as a result records it before the server has named it: the name asked for, and the host."""
        return {"name": self.server_model[:200], "source": f"remote: {self.server().host}"}

    def server(self) -> Endpoint:
        """The checked endpoint, with the key read from its variable (never stored in the result)."""
        try:
            key = self.api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None)
            return parse_endpoint(self.endpoint, api_key=key or None)
        except RemoteError as err:
            raise SettingsError(str(err)) from None


@dataclass(frozen=True)
class Stream:
    """One stream's arrival times at this client (ms since the level began), its model name, and its error."""

    times_ms: list[float]
    sent_ms: float
    model: str | None
    error: str | None
    prompt_tokens: int | None = None  # as the server's usage counts them, when it sends usage


def one_stream(
    endpoint: Endpoint, options: ServerLoadOptions, *, level_start_ns: int, cancel: CancelFlag | None = None
) -> Stream:
    """Stream one chat completion; the arrival time of each token on the level's clock (cut short by `cancel`)."""
    sent_ms = (time.perf_counter_ns() - level_start_ns) / 1e6
    times, model, prompt_tokens = [], None, None
    try:
        for item in stream_chat(endpoint, model=options.server_model, max_tokens=options.max_new_tokens,
                                messages=[{"role": "user", "content": options.prompt}], temperature=0.0,
                                logprobs=False, timeout_s=options.timeout_s, cancel=cancel):  # fmt: skip
            if isinstance(item, RemoteEnd):
                model, prompt_tokens = item.model, (item.usage or {}).get("prompt_tokens")
                break
            times.append((time.perf_counter_ns() - level_start_ns) / 1e6)
    except RemoteError as err:
        return Stream(times_ms=times, sent_ms=sent_ms, model=model, error=str(err))
    counted = prompt_tokens if isinstance(prompt_tokens, int) and prompt_tokens > 0 else None
    return Stream(times_ms=times, sent_ms=sent_ms, model=model, error=None, prompt_tokens=counted)


def level_row(concurrency: int, streams: list[Stream], *, wall_ms: float) -> dict:
    """One concurrency level's row from its streams (failed ones counted, and their tokens too)."""
    ttfts = [s.times_ms[0] - s.sent_ms for s in streams if s.times_ms]
    gaps = [later - earlier for s in streams for earlier, later in zip(s.times_ms, s.times_ms[1:], strict=False)]
    speeds = [(len(s.times_ms) - 1) / ((s.times_ms[-1] - s.times_ms[0]) / 1000)
              for s in streams if len(s.times_ms) > 1 and s.times_ms[-1] > s.times_ms[0]]  # fmt: skip
    tokens = sum(len(s.times_ms) for s in streams)
    return {
        "concurrency": concurrency,
        "streams": len(streams),
        "failed": sum(1 for s in streams if s.error is not None),
        "tokens": tokens,
        "ttft_p50_ms": percentile(ttfts, 50) if ttfts else None,
        "ttft_p90_ms": percentile(ttfts, 90) if ttfts else None,
        "itl_p50_ms": percentile(gaps, 50) if gaps else None,
        "itl_p90_ms": percentile(gaps, 90) if gaps else None,
        "tokens_per_s": tokens / (wall_ms / 1000) if wall_ms > 0 else 0.0,
        "stream_tokens_per_s": statistics.median(speeds) if speeds else None,
        "wall_ms": wall_ms,
    }


def run(loaded: object, options: ServerLoadOptions, progress: Progress) -> Measured:
    """Send each concurrency level's streams at once, one level after another; a row per level."""
    endpoint = options.server()
    levels, errors, model, prompt_tokens = sorted(set(options.concurrency)), [], None, None
    progress(0.0, f"Warming {endpoint.host} up (one short request, not measured)")
    warmup = one_stream(endpoint, replace(options, max_new_tokens=WARMUP_TOKENS), level_start_ns=time.perf_counter_ns(),
                        cancel=progress.cancel)  # fmt: skip
    if warmup.error and not warmup.times_ms:  # a server that refuses cannot be measured: say why, once
        raise SettingsError(f"the warm-up request failed: {warmup.error}")
    for index, concurrency in enumerate(levels):
        progress(
            index / len(levels), f"{concurrency} stream{'s' if concurrency > 1 else ''} at once to {endpoint.host}"
        )
        start_ns = time.perf_counter_ns()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="server-load") as pool:
            futures = [pool.submit(one_stream, endpoint, options, level_start_ns=start_ns, cancel=progress.cancel)
                       for _ in range(concurrency)]  # fmt: skip
            streams = [future.result() for future in futures]
        wall_ms = (time.perf_counter_ns() - start_ns) / 1e6
        progress((index + 1) / len(levels), f"{concurrency} at once: done")  # a Stop cut the level short: not a row
        errors += [s.error for s in streams if s.error]
        model = model or next((s.model for s in streams if s.model), None)
        prompt_tokens = prompt_tokens or next((s.prompt_tokens for s in streams if s.prompt_tokens), None)
        if all(not s.times_ms for s in streams):
            raise SettingsError(f"no stream got a token at concurrency {concurrency}: {errors[-1]}")
        progress.rows.append(level_row(concurrency, streams, wall_ms=wall_ms))
    progress(1.0, "Done")
    rows = progress.rows
    details = {
        "remote_model": {**options.remote_model(), **({"name": model[:200]} if model else {})},
        "host": endpoint.host,
        "clock": CLIENT_CLOCK,
        "errors": errors[:20],
        "prompt_tokens": prompt_tokens,  # the server's count (usage); None when it sends none
    }
    return Measured(rows=rows, details=details, finding=finding(rows))


def finding(rows: list[dict]) -> str:
    """One sentence from the rows: what N streams at once bought in throughput and cost each stream."""
    first, last = rows[0], rows[-1]
    failed = sum(row["failed"] for row in rows)
    broke = f" {failed} stream{'s' if failed != 1 else ''} failed (see the rows)." if failed else ""
    if len(rows) == 1:
        return f"{first['concurrency']} stream(s) at once got {first['tokens_per_s']:,.1f} tokens/s in all.{broke}"
    gain = last["tokens_per_s"] / first["tokens_per_s"] if first["tokens_per_s"] else 0.0
    base = "one stream's" if first["concurrency"] == 1 else f"{first['concurrency']} streams'"  # the sweep's first
    wait = (
        f"each stream's first token came after {ms(first['ttft_p50_ms'])} at {first['concurrency']} and "
        f"{ms(last['ttft_p50_ms'])} at {last['concurrency']}, its gap between tokens {ms(first['itl_p50_ms'])} "
        f"and {ms(last['itl_p50_ms'])}"
    )
    if gain < FLAT:
        return (
            f"{last['concurrency']} streams at once got {last['tokens_per_s']:,.1f} tokens/s in all, only "
            f"{gain:.1f}x {base} {first['tokens_per_s']:,.1f}: this server did not cook the streams together "
            f"(it queues them, or has no continuous batching); {wait}.{broke}"
        )
    return (
        f"{last['concurrency']} streams at once got {last['tokens_per_s']:,.1f} tokens/s in all, {gain:.1f}x "
        f"{base} {first['tokens_per_s']:,.1f}: the server batches them, as this machine's kitchen does; "
        f"{wait}.{broke}"
    )


def ms(value: float | None) -> str:
    """A latency in words for the finding ("n/a" when no stream measured it)."""
    return f"{value:,.0f} ms" if value is not None else "n/a"


def versus_kitchen(load_rows: list[dict], batch_rows: list[dict]) -> str | None:
    """One sentence comparing a server's sweep with this machine's batching sweep at the largest level both
    measured (None when they share no level above 1)."""
    server = {row["concurrency"]: row for row in load_rows}
    kitchen = {row["batch_size"]: row for row in batch_rows}
    shared = sorted(level for level in set(server) & set(kitchen) if level > 1)
    if not shared:
        return None
    level = shared[-1]
    there, here = server[level], kitchen[level]

    def gain(rows: dict, key: str) -> str:
        return f" ({rows[level][key] / rows[1][key]:.1f}x one alone)" if 1 in rows and rows[1][key] else ""

    return (
        f"With {level} at once, the server made {there['tokens_per_s']:,.1f} tokens/s in all"
        f"{gain(server, 'tokens_per_s')} and this machine's kitchen {here['tokens_per_s']:,.1f}"
        f"{gain(kitchen, 'tokens_per_s')}; each stream waited {ms(there['itl_p50_ms'])} between tokens there "
        f"(timed at this client) and {ms(here['itl_ms'])} here."
    )
