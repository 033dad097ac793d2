"""With and without the KV cache: the same greedy answer, once keeping the prep station and once without.

Without the cache every new token re-reads the whole sequence so far, so each step costs more than the last;
with it a step reads one new token against the stored keys and values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.experiments.base import Measured, Options, Progress, require_positive
from engine.generate import prepare_request, stream_generate
from engine.loading import LoadedModel
from engine.records import percentile, summarize
from engine.settings import GenerationSettings
from engine.units import fmt_bytes, fmt_ms

DEFAULT_PROMPT = "Write a long story about a chef who cooks soup."


@dataclass(frozen=True, kw_only=True)
class KvCacheOptions(Options):
    """The prompt and how many tokens to cook, twice."""

    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "the prompt for both runs (chat template applied)"})
    new_tokens: int = field(default=96, metadata={"help": "tokens to generate in each run (end-of-text ignored)"})

    def check(self) -> None:
        require_positive(new_tokens=self.new_tokens)


def run(loaded: LoadedModel, options: KvCacheOptions, progress: Progress) -> Measured:
    """Generate the same answer with the cache on, then off; one row per token of each run."""
    rows, runs = progress.rows, {}
    progress(0.0, "Warming up (two tokens, not measured)")
    warm_up = GenerationSettings(max_new_tokens=2, stop_at_eos=False)
    for _ in stream_generate(loaded, prepare_request(loaded, options.prompt, settings=warm_up)):
        pass  # the first pass of a process pays one-off costs (allocations, thread start) the first run would carry
    for index, kv_cache in enumerate((True, False)):
        settings = GenerationSettings(max_new_tokens=options.new_tokens, kv_cache=kv_cache, stop_at_eos=False)
        request = prepare_request(loaded, options.prompt, settings=settings)
        label = "with the cache" if kv_cache else "without the cache"
        records = []
        progress(index / 2, f"Cooking {label}")
        for record in stream_generate(loaded, request):
            records.append(record)
            rows.append(
                {
                    "kv_cache": kv_cache,
                    "step": record.step,
                    "position": len(request.token_ids) + record.step,  # tokens the model had read before this step
                    "latency_ms": record.latency_ms,
                    "t_ms": record.t_ms,
                    "token_id": record.token_id,
                    "kv_cache_bytes": record.kv_cache_bytes,
                }
            )
            progress(
                (index + len(records) / request.max_new_tokens) / 2,
                f"Cooking {label}: token {len(records)} of {request.max_new_tokens}",
            )
        summary = summarize(records, prompt_tokens=len(request.token_ids))
        runs["on" if kv_cache else "off"] = {
            "total_ms": summary.total_ms,
            "tokens": len(records),
            "kv_cache_bytes": records[-1].kv_cache_bytes,
            "prompt_tokens": len(request.token_ids),
            "token_ids": [record.token_id for record in records],
        }
    progress(1.0, "Done")
    same = runs["on"]["token_ids"] == runs["off"]["token_ids"]
    details = {
        "same_tokens": same,
        "runs": {mode: {key: value for key, value in run.items() if key != "token_ids"} for mode, run in runs.items()},
    }
    return Measured(rows=rows, details=details, finding=finding(rows, details))


def decode_latencies(rows: list[dict], *, kv_cache: bool) -> list[float]:
    """The decode steps' latencies (prefill excluded) of one run, in order."""
    return [row["latency_ms"] for row in rows if row["kv_cache"] is kv_cache and row["step"] > 0]


def edge_means(values: list[float], *, share: float = 0.1) -> tuple[float, float]:
    """Mean of the first and of the last `share` of the values (at least one each): start and end levels."""
    count = max(1, int(len(values) * share))
    return sum(values[:count]) / count, sum(values[-count:]) / count


PREFILL_ALIKE = 0.15  # two single prefill timings this close (or closer than the decode steps' spread) are alike


def prefill_step(rows: list[dict]) -> str:
    """Step 0 is the same prefill in both runs: say whether its two timings agree, or that one was disturbed."""
    on = next(row["latency_ms"] for row in rows if row["kv_cache"] and row["step"] == 0)
    off = next(row["latency_ms"] for row in rows if not row["kv_cache"] and row["step"] == 0)
    steps = decode_latencies(rows, kv_cache=True)
    noise = (percentile(steps, 90) - percentile(steps, 10)) / percentile(steps, 50)  # the decode steps' spread
    said = f"Step 0, the same prefill in both runs, took {on:,.0f} ms with the cache and {off:,.0f} ms without"
    if abs(on / off - 1) <= max(PREFILL_ALIKE, noise):
        return f"{said}: alike, as they should be"
    return (
        f"{said}: {max(on, off) / min(on, off):.1f}x apart, more than the {noise:.0%} spread of the decode steps, "
        "for the same work: one timing each, and the machine was busier during one (run it again to see)"
    )


def finding(rows: list[dict], details: dict) -> str:
    """One sentence: how the per-token cost grew without the cache, and what the cache held."""
    on, off = details["runs"]["on"], details["runs"]["off"]
    with_cache, without = decode_latencies(rows, kv_cache=True), decode_latencies(rows, kv_cache=False)
    if not with_cache:
        return (
            f"With one token per run there is nothing to compare: both took {on['total_ms']:,.0f} and "
            f"{off['total_ms']:,.0f} ms."
        )
    off_start, off_end = edge_means(without)
    on_start, on_end = edge_means(with_cache)
    agreement = (
        "both produced the same tokens"
        if details["same_tokens"]
        else "the two runs' tokens differed (float rounding between the two paths)"
    )
    return (
        "Without the KV cache each token re-read everything before it, so its time grew from "
        f"{off_start:,.0f} to {off_end:,.0f} ms "
        f"and the {off['tokens']} tokens took {fmt_ms(off['total_ms'])}; with the cache it went from "
        f"{on_start:,.0f} to {on_end:,.0f} ms "
        f"and the answer took {fmt_ms(on['total_ms'])} ({off['total_ms'] / on['total_ms']:.1f}x faster) "
        f"for {fmt_bytes(on['kv_cache_bytes'])} of prep station; {agreement}. {prefill_step(rows)}."
    )
