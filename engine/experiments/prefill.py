"""Prefill vs decode: reading the order is parallel, cooking is one token at a time.

For each prompt length: the prefill forward pass (median of repeats) and the decode inter-token latency at
that context length (median over a few greedy steps).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from engine.errors import SettingsError
from engine.experiments.base import Measured, Options, Progress, require_positive
from engine.experiments.common import max_prompt_tokens, prompt_ids
from engine.generate import decode_one_token, prefill
from engine.hardware import timed_ms
from engine.loading import LoadedModel
from engine.records import percentile


@dataclass(frozen=True, kw_only=True)
class PrefillOptions(Options):
    """Which prompt lengths to read, how often, and how many tokens to cook after each."""

    prompt_lengths: tuple[int, ...] = field(
        default=(16, 64, 256, 1024), metadata={"help": "prompt lengths in tokens (capped by the context window)"}
    )
    repeats: int = field(default=3, metadata={"help": "prefill passes per length; the median is reported"})
    decode_tokens: int = field(
        default=8, metadata={"help": "tokens decoded after each prompt to time inter-token latency"}
    )

    def check(self) -> None:
        require_positive(prompt_lengths=self.prompt_lengths, repeats=self.repeats, decode_tokens=self.decode_tokens)
        if self.decode_tokens < 2:
            raise SettingsError("decode tokens must be at least 2: inter-token latency needs two tokens")


def prefill_and_decode(loaded: LoadedModel, ids: torch.Tensor, *, decode_tokens: int) -> tuple[float, list[float]]:
    """One prefill of `ids` (1, T) with a fresh cache, then greedy decode steps; (prefill ms, each step's ms)."""
    cache = DynamicCache(config=loaded.model.config)
    prefill_ms, logits = timed_ms(loaded.device, lambda: prefill(loaded.model, ids, cache))  # logits (1, vocab)
    step_ms = []
    for _ in range(decode_tokens - 1):
        token = logits.argmax(dim=-1, keepdim=True)  # (1, 1)
        elapsed, logits = timed_ms(loaded.device, lambda token=token: decode_one_token(loaded.model, token, cache))
        step_ms.append(elapsed)
    return prefill_ms, step_ms


def run(loaded: LoadedModel, options: PrefillOptions, progress: Progress) -> Measured:
    """Measure prefill speed and decode latency at each prompt length."""
    limit = max_prompt_tokens(loaded, new_tokens=options.decode_tokens)
    lengths = sorted({min(length, limit) for length in options.prompt_lengths})
    capped = [length for length in options.prompt_lengths if length > limit]
    progress(0.0, "Warming up (one short pass, not measured)")
    prefill_and_decode(loaded, prompt_ids(loaded, min(8, limit)), decode_tokens=2)
    rows = progress.rows
    work_total = sum(lengths) * options.repeats
    work_done = 0
    for length in lengths:
        ids = prompt_ids(loaded, length)  # (1, length)
        prefill_times, step_times = [], []
        for repeat in range(options.repeats):
            progress(
                work_done / work_total, f"Reading a {length:,}-token order (pass {repeat + 1} of {options.repeats})"
            )
            prefill_ms, steps = prefill_and_decode(loaded, ids, decode_tokens=options.decode_tokens)
            prefill_times.append(prefill_ms)
            step_times += steps
            work_done += length
        prefill_ms, itl_ms = statistics.median(prefill_times), statistics.median(step_times)
        rows.append(
            {
                "prompt_tokens": length,
                "prefill_ms": prefill_ms,
                "prefill_min_ms": min(prefill_times),
                "prefill_max_ms": max(prefill_times),
                "prefill_tokens_per_s": length / (prefill_ms / 1000),
                "prefill_ms_per_token": prefill_ms / length,
                "itl_ms": itl_ms,
                "itl_p10_ms": percentile(step_times, 10),  # most steps fell between these two
                "itl_p90_ms": percentile(step_times, 90),
                "decode_tokens_per_s": 1000 / itl_ms,
            }
        )
    progress(1.0, "Done")
    details = {"capped_lengths": capped, "context_length": loaded.facts.context_length}
    return Measured(rows=rows, details=details, finding=finding(rows))


def decode_after(first: dict, last: dict) -> str:
    """What a decode step cost after the short prompt and after the long one, said as far as the spread allows."""
    short, long = first["itl_ms"], last["itl_ms"]
    said = (
        f"{short:,.1f} ms per token after the short order (most steps {first['itl_p10_ms']:,.1f}–"
        f"{first['itl_p90_ms']:,.1f} ms) and {long:,.1f} ms after the long one ({last['itl_p10_ms']:,.1f}–"
        f"{last['itl_p90_ms']:,.1f} ms)"
    )
    if last["itl_p10_ms"] <= first["itl_p90_ms"] and first["itl_p10_ms"] <= last["itl_p90_ms"]:
        return f"{said}: the ranges overlap, so any effect of the longer context is within this machine's noise"
    if long > short:
        return f"{said}: slower after the long order, whose bigger KV cache each step reads"
    return (
        f"{said}: faster after the long order, which a bigger KV cache cannot cause, so the machine itself was "
        "busier during the short one (run it again to see)"
    )


def finding(rows: list[dict]) -> str:
    """One sentence from the measured rows: how prefill speed scales with length, against decode."""
    first, last = rows[0], rows[-1]
    fastest = max(rows, key=lambda row: row["prefill_tokens_per_s"])
    if len(rows) == 1:
        return (
            f"Reading a {first['prompt_tokens']:,}-token order ran at {first['prefill_tokens_per_s']:,.0f} tokens/s, "
            f"while cooking the answer ran at {first['decode_tokens_per_s']:,.1f} tokens/s, one token at a time."
        )
    speedup = last["prefill_tokens_per_s"] / first["prefill_tokens_per_s"]
    trend = (
        f"{speedup:.1f}x faster per token"
        if speedup >= 1.05
        else f"{1 / speedup:.1f}x slower per token"
        if speedup <= 0.95
        else "about as fast per token"
    )
    peak = (
        ""
        if fastest is last
        else f" (fastest at {fastest['prompt_tokens']:,} tokens, {fastest['prefill_tokens_per_s']:,.0f} tokens/s, "
        "where compute saturates)"
    )
    return (
        f"Reading a {last['prompt_tokens']:,}-token order took {last['prefill_ms']:,.0f} ms, {trend} than a "
        f"{first['prompt_tokens']:,}-token one "
        f"({last['prefill_tokens_per_s']:,.0f} vs {first['prefill_tokens_per_s']:,.0f} tokens/s){peak}, "
        f"while cooking stayed one token at a time: {decode_after(first, last)}."
    )
