"""Energy per token: run a request a few times and read the device's energy counter around each run.

Where no counter can be read (no NVIDIA GPU, RAPL not exposed), the rows keep the time and tokens and leave
energy empty; the Costs page then estimates energy from a hardware preset's power and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.energy import energy_counter
from engine.experiments.base import Measured, Options, Progress, require_positive
from engine.generate import prepare_request, stream_generate
from engine.hardware import device_clock_ns
from engine.loading import LoadedModel
from engine.settings import GenerationSettings


@dataclass(frozen=True, kw_only=True)
class EnergyOptions(Options):
    """The request to measure and how many times."""

    prompt: str = field(
        default="Write a long story about a chef who cooks soup.", metadata={"help": "the request's prompt"}
    )
    new_tokens: int = field(default=64, metadata={"help": "tokens each run generates (end-of-text ignored)"})
    runs: int = field(default=3, metadata={"help": "how many times the request runs"})

    def check(self) -> None:
        require_positive(new_tokens=self.new_tokens, runs=self.runs)


def run(loaded: LoadedModel, options: EnergyOptions, progress: Progress) -> Measured:
    """Time each run and read the energy counter around it."""
    counter = energy_counter(loaded.device)
    clock = device_clock_ns(loaded.device)
    request = prepare_request(
        loaded, options.prompt, settings=GenerationSettings(max_new_tokens=options.new_tokens, stop_at_eos=False)
    )
    rows = progress.rows
    for index in range(options.runs):
        progress(index / options.runs, f"Run {index + 1} of {options.runs}")
        began, joules_before = clock(), counter.read() if counter else None
        tokens = sum(1 for _ in stream_generate(loaded, request))
        ended, joules_after = clock(), counter.read() if counter else None
        seconds = (ended - began) / 1e9
        joules = counter.joules_between(joules_before, joules_after) if counter else None
        rows.append(
            {
                "run": index + 1,
                "tokens": tokens,
                "time_s": seconds,
                "tokens_per_s": tokens / seconds,
                "energy_j": joules,
                "average_power_w": joules / seconds if joules is not None else None,
                "tokens_per_joule": tokens / joules if joules else None,
            }
        )
    progress(1.0, "Done")
    details = {"energy_source": counter.name if counter else None}
    return Measured(rows=rows, details=details, finding=finding(rows, details))


def finding(rows: list[dict], details: dict) -> str:
    """One sentence: energy per token where measured, or why it could not be."""
    tokens = sum(row["tokens"] for row in rows)
    seconds = sum(row["time_s"] for row in rows)
    if details["energy_source"] is None:
        return (
            f"{len(rows)} runs made {tokens} tokens in {seconds:,.1f} s ({tokens / seconds:,.1f} tokens/s), "
            "but this machine exposes no "
            "energy counter (no NVIDIA GPU with NVML, no readable RAPL), so energy can only be estimated "
            "from a power figure."
        )
    joules = sum(row["energy_j"] for row in rows)
    return (
        f"{len(rows)} runs made {tokens} tokens in {seconds:,.1f} s using {joules:,.1f} J at "
        f"{joules / seconds:,.1f} W on average: "
        f"{tokens / joules:,.2f} tokens per joule ({joules / tokens:,.3f} J per token), "
        f"{details['energy_source'].removeprefix('measured: ')}."
    )
