"""The per-token record and the run summary, with vLLM's latency definitions."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Alternative:
    """One of the most likely next tokens at a step, with its probability (temperature 1)."""

    token: str
    prob: float


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    """One generated token and what it cost; the field names are a contract other tools read."""

    step: int  # 0 = the prefill step, which produces the first token
    phase: str  # "prefill" or "decode"
    token_id: int | None  # None: a remote server sends text, not token ids
    text: str  # the token's text; joining all texts gives the answer (split multi-byte characters included)
    latency_ms: float  # this step's forward pass + sampling, nothing else (remote: the gap since the last token)
    t_ms: float  # time since the request started, when this token existed (remote: when its chunk arrived)
    kv_cache_bytes: int | None  # bytes held by the cache's key/value tensors after this step (0 with the cache off)
    memory_bytes: int | None  # process RSS on CPU; allocated device memory on CUDA/MPS (None: a remote server's)
    logprob: float | None  # natural log of the chosen token's probability (temperature 1); None: not sent
    top: tuple[Alternative, ...]  # the 5 most likely tokens at this step (remote: what the server sent, or none)
    batch_size: int = 1  # requests whose tokens this step computed (the kitchen batches concurrent visitors)
    step_tokens: int | None = None  # tokens the step fed the model, all requests' (prefill included); None: unknown
    shared_chunk: bool | None = None  # remote only: its chunk carried several tokens, so t_ms is an even share

    def to_dict(self) -> dict:
        """The record as a plain JSON-ready dict (`shared_chunk` only in remote traces)."""
        record = {**asdict(self), "top": [asdict(alternative) for alternative in self.top]}
        if self.shared_chunk is None:
            del record["shared_chunk"]
        return record


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Headline figures of one run (None where a figure needs more tokens than were made)."""

    ttft_ms: float  # time to first token: request start to the first token (the prefill step)
    itl_p50_ms: float | None  # inter-token latency: gaps between consecutive tokens, percentiles
    itl_p90_ms: float | None
    itl_p99_ms: float | None
    tpot_ms: float | None  # time per output token: (total - TTFT) / (new tokens - 1)
    decode_tokens_per_s: float | None  # (new tokens - 1) / (total - TTFT)
    prefill_tokens_per_s: float | None  # prompt tokens / TTFT
    total_ms: float  # request start to the last token (end-to-end latency)
    peak_memory_bytes: int | None  # None: not known (a remote server's)
    new_tokens: int

    def to_dict(self) -> dict:
        """The summary as a plain JSON-ready dict."""
        return asdict(self)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99), interpolated between ranks like numpy's default (statistics' inclusive method)."""
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summarize(
    records: list[TokenRecord] | tuple[TokenRecord, ...], *, prompt_tokens: int, peak_memory_bytes: int | None = None
) -> Summary:
    """Headline figures from the records, using vLLM's definitions (vllm/benchmarks/serve.py).

    TTFT is the first token's time; ITL is each gap between consecutive tokens' times; TPOT is
    (end-to-end - TTFT) / (output tokens - 1). The raw timestamps stay in the records, so any other
    definition can be computed from a trace exactly.
    """
    if not records:
        raise ValueError("a summary needs at least one record")
    times = [record.t_ms for record in records]
    ttft, total, count = times[0], times[-1], len(records)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    tpot = (total - ttft) / (count - 1) if count > 1 else None
    measured = [record.memory_bytes for record in records if record.memory_bytes is not None]
    peak = max([*measured, peak_memory_bytes or 0]) if measured or peak_memory_bytes else None
    return Summary(
        ttft_ms=ttft,
        itl_p50_ms=percentile(gaps, 50) if gaps else None,
        itl_p90_ms=percentile(gaps, 90) if gaps else None,
        itl_p99_ms=percentile(gaps, 99) if gaps else None,
        tpot_ms=tpot,
        decode_tokens_per_s=1000 / tpot if tpot else None,
        prefill_tokens_per_s=prompt_tokens / (ttft / 1000) if ttft > 0 and prompt_tokens else None,
        total_ms=total,
        peak_memory_bytes=peak,
        new_tokens=count,
    )
