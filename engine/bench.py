"""Our instrumented loop against transformers' `model.generate`, and the batched kitchen serving one request alone.

All three run greedy with the KV cache for exactly the same number of new tokens, in one process, alternating
A B C A B C over several rounds after a warm-up of each. Decode tokens/s = (new tokens - 1) / (last token time -
first token time) for both, so the figure compares decode steps only. Goal: ours >= 0.97x generate.

On a small, noisy machine the forward pass itself drifts by several percent between runs, which can hide
a 1-2% difference. So the bench also reports the recording cost directly: per decode token, the wall-time
gap between tokens minus the timed step, i.e. what detokenizing, top-5, memory and KV probes add.

The kitchen (engine.serving) is what the dashboard runs; a lone visitor must lose nothing to it: goal kitchen /
ours >= 0.95, and the same greedy tokens.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.generate import prepare_request
from engine.hardware import device_clock_ns
from engine.loading import LoadedModel
from engine.request import Request
from engine.run import run_trace
from engine.serving import serve_alone
from engine.settings import GenerationSettings


@dataclass(frozen=True, kw_only=True)
class BenchResult:
    """Per-round decode tokens/s of both loops and their ratio of medians."""

    prompt_tokens: int
    new_tokens: int
    ours_tokens_per_s: tuple[float, ...]
    generate_tokens_per_s: tuple[float, ...]
    recording_ms: tuple[float, ...]  # per round: median (gap between tokens - timed step) of our loop
    step_ms: tuple[float, ...]  # per round: median timed decode step of our loop
    kitchen_tokens_per_s: tuple[float, ...] = ()  # the batched kitchen with this one request
    kitchen_same_tokens: bool = True  # its greedy tokens equal our loop's

    @property
    def kitchen_ratio(self) -> float:
        """Median decode tokens/s of the kitchen serving one request divided by our single-request loop's."""
        return statistics.median(self.kitchen_tokens_per_s) / statistics.median(self.ours_tokens_per_s)

    @property
    def recording_share(self) -> float:
        """The recording cost as a fraction of one decode step (median over rounds)."""
        return statistics.median(r / s for r, s in zip(self.recording_ms, self.step_ms, strict=True))

    @property
    def ratio(self) -> float:
        """Median decode tokens/s of our loop divided by that of model.generate (1.0 = equally fast)."""
        return statistics.median(self.ours_tokens_per_s) / statistics.median(self.generate_tokens_per_s)


class TokenClock:
    """A generate() streamer that notes when each new token arrives (the first put is the prompt)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock, self.times_ns, self.prompt_seen = clock, [], False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.times_ns.append(self.clock())

    def end(self) -> None:
        pass


def generate_decode_tokens_per_s(loaded: LoadedModel, token_ids: tuple[int, ...], new_tokens: int) -> float:
    """Decode tokens/s of transformers' own generate() for exactly `new_tokens` greedy tokens."""
    clock = TokenClock(device_clock_ns(loaded.device))
    input_ids = torch.tensor([token_ids], device=loaded.device)  # (1, T)
    with torch.inference_mode():
        loaded.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            streamer=clock,
            pad_token_id=loaded.facts.eos_token_ids[0] if loaded.facts.eos_token_ids else 0,
        )
    span_s = (clock.times_ns[-1] - clock.times_ns[0]) / 1e9
    return (len(clock.times_ns) - 1) / span_s


def ours_decode(loaded: LoadedModel, prompt: str, settings: GenerationSettings) -> tuple[float, float, float]:
    """Our instrumented loop (recording included): decode tokens/s, median recording ms, median step ms."""
    events = run_trace(loaded, prompt, settings=settings).events
    decode = list(itertools.pairwise(events))
    recording = statistics.median((later.t_ms - earlier.t_ms) - later.latency_ms for earlier, later in decode)
    step = statistics.median(later.latency_ms for _, later in decode)
    return (len(events) - 1) / ((events[-1].t_ms - events[0].t_ms) / 1000), recording, step


def kitchen_decode(loaded: LoadedModel, request: Request) -> tuple[float, list[int]]:
    """The batched kitchen serving this one request: decode tokens/s (same definition) and its tokens."""
    events = list(serve_alone(loaded, request))
    return (len(events) - 1) / ((events[-1].t_ms - events[0].t_ms) / 1000), [e.token_id for e in events]


def bench(
    loaded: LoadedModel,
    *,
    prompt: str,
    new_tokens: int = 64,
    rounds: int = 5,
    on_round: Callable[[int, float, float, float], None] | None = None,
) -> BenchResult:
    """Alternate our loop, model.generate and the kitchen `rounds` times after one warm-up each; return the series."""
    settings = GenerationSettings(max_new_tokens=new_tokens, stop_at_eos=False)
    request = prepare_request(loaded, prompt, settings=settings)
    ours_decode(loaded, prompt, settings)  # warm-up: first-call allocations, lazy inits
    generate_decode_tokens_per_s(loaded, request.token_ids, new_tokens)
    kitchen_decode(loaded, request)
    reference = [e.token_id for e in run_trace(loaded, prompt, settings=settings).events]
    ours, theirs, kitchen, recording, step, same = [], [], [], [], [], True
    for index in range(rounds):
        rate, recording_ms, step_ms = ours_decode(loaded, prompt, settings)
        ours.append(rate)
        recording.append(recording_ms)
        step.append(step_ms)
        theirs.append(generate_decode_tokens_per_s(loaded, request.token_ids, new_tokens))
        kitchen_rate, tokens = kitchen_decode(loaded, request)
        kitchen.append(kitchen_rate)
        same = same and tokens == reference
        if on_round is not None:
            on_round(index, ours[-1], theirs[-1], kitchen[-1])
    return BenchResult(
        prompt_tokens=len(request.token_ids),
        new_tokens=new_tokens,
        ours_tokens_per_s=tuple(ours),
        generate_tokens_per_s=tuple(theirs),
        recording_ms=tuple(recording),
        step_ms=tuple(step),
        kitchen_tokens_per_s=tuple(kitchen),
        kitchen_same_tokens=same,
    )
