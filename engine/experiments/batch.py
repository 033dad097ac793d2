"""Batching: cook for several tables at once. Aggregate tokens/s against each user's wait between tokens.

At batch 1 a decode step reads every weight to make one token; at batch B the same read makes B tokens, so
throughput rises until compute, not memory, is the limit, while each user waits a little longer per token.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import psutil
import torch
from transformers import DynamicCache

from engine.errors import SettingsError
from engine.experiments.base import Measured, Options, Progress, require_positive
from engine.experiments.common import max_prompt_tokens, prompt_ids
from engine.generate import decode_one_token, kv_cache_bytes, prefill
from engine.hardware import timed_ms
from engine.loading import LoadedModel
from engine.units import fmt_bytes

MEMORY_HEADROOM = 3.0  # refuse a batch whose KV cache would take more than 1/3 of the free memory


@dataclass(frozen=True, kw_only=True)
class BatchOptions(Options):
    """Batch sizes to try, how long each runs, and the serving question's inputs."""

    batch_sizes: tuple[int, ...] = field(default=(1, 2, 4, 8, 16), metadata={"help": "how many users cook at once"})
    prompt_tokens: int = field(default=32, metadata={"help": "each user's prompt length in tokens"})
    decode_tokens: int = field(default=16, metadata={"help": "decode steps timed per batch size"})
    budget_s: float = field(
        default=10.0, metadata={"help": "the wait a user accepts for a whole answer (seed article: ~10 s)"}
    )
    answer_tokens: int = field(
        default=250, metadata={"help": "a typical answer's length in tokens, for the serving question"}
    )

    def check(self) -> None:
        require_positive(
            batch_sizes=self.batch_sizes,
            prompt_tokens=self.prompt_tokens,
            decode_tokens=self.decode_tokens,
            answer_tokens=self.answer_tokens,
        )
        if not self.budget_s > 0:
            raise SettingsError(f"the time budget must be above 0 seconds, got {self.budget_s!r}")


def free_memory_bytes(device: torch.device) -> int:
    """Memory still free for new tensors on the device."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


def run_batch(
    loaded: LoadedModel, *, batch_size: int, prompt_tokens: int, decode_tokens: int
) -> tuple[float, list[float], int]:
    """Prefill `batch_size` copies of one prompt, then time greedy decode steps; (prefill ms, step ms, KV bytes)."""
    ids = prompt_ids(loaded, prompt_tokens, batch=batch_size)  # (B, T)
    cache = DynamicCache(config=loaded.model.config)
    prefill_ms, logits = timed_ms(loaded.device, lambda: prefill(loaded.model, ids, cache))  # logits (B, vocab)
    step_ms = []
    for _ in range(decode_tokens):
        tokens = logits.argmax(dim=-1, keepdim=True)  # (B, 1): one new token per user
        elapsed, logits = timed_ms(loaded.device, lambda tokens=tokens: decode_one_token(loaded.model, tokens, cache))
        step_ms.append(elapsed)
    return prefill_ms, step_ms, kv_cache_bytes(cache)


def run(loaded: LoadedModel, options: BatchOptions, progress: Progress) -> Measured:
    """Measure each batch size until memory runs short, then answer the serving question."""
    prompt_tokens = min(options.prompt_tokens, max_prompt_tokens(loaded, new_tokens=options.decode_tokens))
    sizes = sorted(set(options.batch_sizes))
    progress(0.0, "Warming up (one short pass, not measured)")
    run_batch(loaded, batch_size=1, prompt_tokens=prompt_tokens, decode_tokens=2)
    rows, stopped_early = progress.rows, None
    for index, size in enumerate(sizes):
        kv_needed = size * (prompt_tokens + options.decode_tokens) * loaded.facts.kv_bytes_per_token
        if kv_needed * MEMORY_HEADROOM > free_memory_bytes(loaded.device):
            stopped_early = (
                f"batch {size} would need {fmt_bytes(kv_needed)} of KV cache, more than a third of the free memory"
            )
            break
        progress(index / len(sizes), f"Cooking for {size} table{'s' if size > 1 else ''} at once")
        try:
            prefill_ms, step_ms, kv_bytes = run_batch(
                loaded, batch_size=size, prompt_tokens=prompt_tokens, decode_tokens=options.decode_tokens
            )
        except torch.OutOfMemoryError:
            stopped_early = f"batch {size} ran out of device memory"
            break
        itl_ms = statistics.median(step_ms)
        answer_s = (prefill_ms + itl_ms * (options.answer_tokens - 1)) / 1000
        rows.append(
            {
                "batch_size": size,
                "tokens_per_s": size * len(step_ms) / (sum(step_ms) / 1000),
                "itl_ms": itl_ms,
                "per_user_tokens_per_s": 1000 / itl_ms,
                "prefill_ms": prefill_ms,
                "kv_cache_bytes": kv_bytes,
                "answer_s": answer_s,
                "within_budget": answer_s <= options.budget_s,
            }
        )
    progress(1.0, "Done")
    details = {
        "stopped_early": stopped_early,
        "prompt_tokens": prompt_tokens,
        "serving": serving_answer(rows, loaded, options, prompt_tokens),
    }
    return Measured(rows=rows, details=details, finding=finding(rows, details, options))


def serving_answer(rows: list[dict], loaded: LoadedModel, options: BatchOptions, prompt_tokens: int) -> dict:
    """How many users one machine serves at once within the budget, and what all their KV caches weigh."""
    fitting = [row for row in rows if row["within_budget"]]
    users = max((row["batch_size"] for row in fitting), default=0)
    kv_per_user = (prompt_tokens + options.answer_tokens) * loaded.facts.kv_bytes_per_token
    best = next((row for row in rows if row["batch_size"] == users), None)
    return {
        "users": users,  # the largest measured batch whose answer fits the budget (0: not even one user)
        "largest_measured": max((row["batch_size"] for row in rows), default=0),
        "answer_s": best["answer_s"] if best else (rows[0]["answer_s"] if rows else None),
        "kv_bytes_per_user": kv_per_user,
        "kv_bytes_all_users": users * kv_per_user,
        "budget_s": options.budget_s,
        "answer_tokens": options.answer_tokens,
    }


def finding(rows: list[dict], details: dict, options: BatchOptions) -> str:
    """One sentence: throughput gained and latency paid by batching, and the serving answer."""
    if not rows:
        return f"No batch could be measured: {details['stopped_early']}."
    first, last, serving = rows[0], rows[-1], details["serving"]
    batching = (
        (
            f"Cooking for {last['batch_size']} tables at once made {last['tokens_per_s']:,.1f} tokens/s in all, "
            f"{last['tokens_per_s'] / first['tokens_per_s']:.1f}x batch {first['batch_size']}'s "
            f"{first['tokens_per_s']:,.1f}, "
            f"while each user's wait per token went from {first['itl_ms']:,.0f} to {last['itl_ms']:,.0f} ms"
        )
        if len(rows) > 1
        else f"Batch {first['batch_size']} made {first['tokens_per_s']:,.1f} tokens/s"
    )
    if serving["users"] == 0:
        serve = (
            f"even one user waits {serving['answer_s']:,.1f} s for a {options.answer_tokens}-token answer, "
            f"over the {options.budget_s:g}-second budget"
        )
    else:
        more = " (the largest batch measured: more may fit)" if serving["users"] == serving["largest_measured"] else ""
        serve = (
            f"within the {options.budget_s:g}-second budget for a {options.answer_tokens}-token answer this "
            "machine serves "
            f"{serving['users']} users at once{more}, whose KV caches weigh {fmt_bytes(serving['kv_bytes_all_users'])}"
        )
    return f"{batching}; {serve}."
