"""What inference costs: the formulas (each with its source), hardware presets with cited figures, workload plans.

cost per 1M tokens = price per hour / (tokens/s x 3600) x 10^6      (kubernetes-sigs/inference-perf #139)
tokens per second per watt = tokens/s / watts = tokens per joule    (a watt is a joule per second)
tokens per second per dollar-hour = tokens/s / price per hour
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SettingsError

PRESETS_FILE = Path(__file__).resolve().parent.parent / "assets" / "hardware_presets.json"
SECONDS_PER_HOUR = 3600
HOURS_PER_MONTH = 730  # 8,760 hours a year / 12
SECONDS_PER_DAY = 86_400


def cost_per_million_tokens(*, price_per_hour: float, tokens_per_s: float) -> float:
    """Dollars per million tokens at a steady rate: price per hour / (tokens/s x 3600) x 10^6."""
    return price_per_hour / (tokens_per_s * SECONDS_PER_HOUR) * 1e6


def tokens_per_joule(*, tokens_per_s: float, watts: float) -> float:
    """Tokens per joule, which is also tokens per second per watt: tokens/s / watts."""
    return tokens_per_s / watts


def tokens_per_dollar_hour(*, tokens_per_s: float, price_per_hour: float) -> float:
    """Tokens per second bought by each dollar per hour of hardware."""
    return tokens_per_s / price_per_hour


@dataclass(frozen=True, kw_only=True)
class Figure:
    """One number with where it comes from, and its kind: cited (published), measured (here), typed, or estimate."""

    value: float | None
    source: str
    kind: str = "cited"  # one of FIGURE_KINDS

    @property
    def estimate(self) -> bool:
        """True for a figure we derived rather than read, measured or were told."""
        return self.kind == "estimate"


FIGURE_KINDS = ("cited", "measured", "typed", "estimate")


@dataclass(frozen=True, kw_only=True)
class HardwarePreset:
    """A machine to price: price per hour, power, memory bandwidth and peak FLOP/s, each with its source."""

    key: str
    name: str
    kind: str
    price_per_hour: Figure
    power_watts: Figure
    bandwidth_bytes_per_s: Figure
    peak_flops: Figure


FIGURES = ("price_per_hour", "power_watts", "bandwidth_bytes_per_s", "peak_flops")


def load_presets(path: Path = PRESETS_FILE) -> list[HardwarePreset]:
    """The hardware presets from assets/hardware_presets.json; every figure must carry a source."""
    data = json.loads(path.read_text(encoding="utf-8"))
    presets = []
    for entry in data["presets"]:
        for name in FIGURES:
            figure = entry[name]
            if not str(figure.get("source", "")).strip():
                raise SettingsError(f"preset {entry['key']}: {name} has no source")
        presets.append(
            HardwarePreset(
                key=entry["key"],
                name=entry["name"],
                kind=entry["kind"],
                **{name: preset_figure(entry[name]) for name in FIGURES},
            )
        )
    return presets


def preset_figure(entry: dict) -> Figure:
    """A figure from the presets file: cited, or an estimate where the file marks it so."""
    return Figure(value=entry["value"], source=entry["source"], kind="estimate" if entry.get("estimate") else "cited")


def market_projection(path: Path = PRESETS_FILE) -> dict:
    """The seed article's cited analyst projection of inference vs training capital spending."""
    return json.loads(path.read_text(encoding="utf-8"))["market"]


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What a service must do: requests a day, tokens in and out of each, and how long a user may wait."""

    requests_per_day: float
    input_tokens: int
    output_tokens: int
    latency_target_s: float  # the longest a whole answer may take (the seed article's patience: ~10 s)

    def check(self) -> None:
        """Raise SettingsError for a workload that cannot be planned."""
        if self.requests_per_day <= 0 or self.input_tokens < 0 or self.output_tokens < 1 or self.latency_target_s <= 0:
            raise SettingsError(
                "a workload needs requests per day above 0, input tokens of 0 or more, at least 1 output "
                "token and a latency target above 0"
            )


@dataclass(frozen=True, kw_only=True)
class Throughput:
    """How fast one machine reads and writes: prefill and decode tokens/s, and at how many requests at once."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float  # all concurrent requests together
    concurrent_requests: int = 1  # the batch the decode rate was measured at
    source: str = ""
    measured_here: bool = True  # False: typed, or a server's (its hardware unknown): never scaled by this machine's

    def request_seconds(self, workload: Workload) -> float:
        """One request's time, arrival to last token: read the input, then write the output at its share of decode."""
        per_request_decode = self.decode_tokens_per_s / self.concurrent_requests
        return workload.input_tokens / self.prefill_tokens_per_s + workload.output_tokens / per_request_decode


@dataclass(frozen=True, kw_only=True)
class WorkloadPlan:
    """What a workload needs on one kind of machine, if it meets the latency target."""

    request_seconds: float
    meets_target: bool
    machines: int  # at the average load, always on (0 when a single request misses the target)
    busy_fraction: float  # of the machines' time, at that load
    monthly_cost: float
    cost_per_request: float
    output_cost_per_million_tokens: float
    energy_kwh_per_day: float  # all machines, always on, at the given power
    energy_kwh_per_day_busy: float  # only the time spent on requests


def plan_workload(
    workload: Workload, throughput: Throughput, *, price_per_hour: float, power_watts: float
) -> WorkloadPlan:
    """Machines, money and energy for a workload at an average, evenly spread load."""
    workload.check()
    seconds = throughput.request_seconds(workload)
    busy_seconds_per_day = workload.requests_per_day * seconds / throughput.concurrent_requests
    machines = math.ceil(busy_seconds_per_day / SECONDS_PER_DAY) if seconds <= workload.latency_target_s else 0
    output_rate = throughput.decode_tokens_per_s
    return WorkloadPlan(
        request_seconds=seconds,
        meets_target=seconds <= workload.latency_target_s,
        machines=machines,
        busy_fraction=busy_seconds_per_day / (machines * SECONDS_PER_DAY) if machines else 0.0,
        monthly_cost=machines * price_per_hour * HOURS_PER_MONTH,
        cost_per_request=price_per_hour * seconds / throughput.concurrent_requests / SECONDS_PER_HOUR,
        output_cost_per_million_tokens=cost_per_million_tokens(price_per_hour=price_per_hour, tokens_per_s=output_rate),
        energy_kwh_per_day=machines * power_watts * 24 / 1000,
        energy_kwh_per_day_busy=busy_seconds_per_day * power_watts / 3.6e6,
    )


def scaled_by_bandwidth(tokens_per_s: float, *, measured_bandwidth: float, target_bandwidth: float) -> float:
    """An estimate of decode speed on other hardware: decode is bandwidth-bound, so it scales with bytes/s."""
    return tokens_per_s * target_bandwidth / measured_bandwidth


def this_machine(*, price_per_hour: float, power_watts: float, roofline=None, energy=None) -> HardwarePreset:
    """This machine as a preset: bandwidth and FLOP/s from a memory-wall result, power from an energy result."""
    when = lambda result: f"{result.created_at[:10]}"  # noqa: E731
    bandwidth = peak = Figure(value=None, source="not measured yet: run the memory-wall experiment", kind="measured")
    if roofline is not None:
        bandwidth = Figure(
            value=roofline.details["bandwidth_bytes_per_s"],
            source=f"measured here by the memory-wall experiment ({when(roofline)}): "
            f"{roofline.details['bandwidth_method']}",
            kind="measured",
        )
        peak = Figure(
            value=roofline.details["peak_flops"],
            source=f"measured here by the memory-wall experiment ({when(roofline)}): "
            f"{roofline.details['flops_method']}",
            kind="measured",
        )
    power = Figure(value=power_watts, source="typed: your estimate of this machine's power draw", kind="typed")
    measured_watts = [
        row["average_power_w"] for row in (energy.rows if energy is not None else ()) if row.get("average_power_w")
    ]
    if measured_watts:
        power = Figure(
            value=sum(measured_watts) / len(measured_watts),
            source=f"measured here by the energy experiment ({when(energy)}): {energy.details['energy_source']}",
            kind="measured",
        )
    return HardwarePreset(
        key="this-machine",
        name="This machine",
        kind="this machine",
        price_per_hour=Figure(value=price_per_hour, source="typed: what this machine costs you per hour", kind="typed"),
        power_watts=power,
        bandwidth_bytes_per_s=bandwidth,
        peak_flops=peak,
    )


def custom_machine(
    *, price_per_hour: float, power_watts: float, bandwidth_bytes_per_s: float | None, peak_flops: float | None
) -> HardwarePreset:
    """A machine described by the visitor: every figure typed."""
    typed = "typed by you"
    return HardwarePreset(
        key="custom",
        name="Custom",
        kind="custom",
        price_per_hour=Figure(value=price_per_hour, source=typed, kind="typed"),
        power_watts=Figure(value=power_watts, source=typed, kind="typed"),
        bandwidth_bytes_per_s=Figure(value=bandwidth_bytes_per_s, source=typed, kind="typed"),
        peak_flops=Figure(value=peak_flops, source=typed, kind="typed"),
    )


def throughput_from_trace(trace) -> Throughput | None:
    """Prefill and decode speed of a recorded run (batch 1), or None when it has too few tokens."""
    summary = trace.summary
    if not summary.decode_tokens_per_s or not summary.prefill_tokens_per_s:
        return None
    model = trace.model
    return Throughput(
        prefill_tokens_per_s=summary.prefill_tokens_per_s,
        decode_tokens_per_s=summary.decode_tokens_per_s,
        concurrent_requests=1,
        source=f"measured: your run of {trace.created_at[:16].replace('T', ' ')} ({model['name']}, {model['dtype']} "
        f"on {model['device']}, batch 1)",
    )


def throughput_from_server_trace(trace) -> tuple[Throughput | None, str | None]:
    """A server run's decode rate (measured at this client) and an estimated prefill rate, or None and why not.

    A client sees no prefill step, only the time to the first token; the server's prompt token count (its usage)
    over that time is a lower bound on its prefill speed (the time includes the network and its queue).
    """
    summary, remote = trace.summary, trace.remote or {}
    host = remote.get("host", "?")
    if not summary.decode_tokens_per_s:
        return None, f"the run on {host} has too few tokens for a decode rate"
    prompt_tokens = (remote.get("usage") or {}).get("prompt_tokens")
    if not isinstance(prompt_tokens, int) or prompt_tokens < 1 or summary.ttft_ms <= 0:
        return None, f"{host} sent no prompt token count (usage), so its prefill speed cannot even be estimated"
    when = trace.created_at[:16].replace("T", " ")
    return Throughput(
        prefill_tokens_per_s=prompt_tokens / (summary.ttft_ms / 1000),
        decode_tokens_per_s=summary.decode_tokens_per_s,
        concurrent_requests=1,
        source=f"measured at this client: your run of {when} on the server {host} ({trace.model['name']}, batch 1); "
        f"prefill an estimate: its {prompt_tokens} prompt tokens / the {summary.ttft_ms:,.0f} ms TTFT, which "
        "includes the network and its queue",
        measured_here=False,
    ), None


def throughput_from_server_load(result) -> tuple[Throughput | None, str | None]:
    """A load sweep's busiest level without failures (tokens/s of all streams, at the client), or None and why not.

    Prefill is an estimate: that level's prompts (the server's count) read within its p90 TTFT.
    """
    host = result.details.get("host", "?")
    prompt_tokens = result.details.get("prompt_tokens")
    whole = [row for row in result.rows if not row["failed"] and row["ttft_p90_ms"]]
    if not whole:
        return None, f"every level of the sweep against {host} had a failed stream"
    if not prompt_tokens:
        return None, f"{host} sent no prompt token count (usage), so its prefill speed cannot even be estimated"
    best = max(whole, key=lambda row: row["tokens_per_s"])
    level, when = best["concurrency"], result.created_at[:16].replace("T", " ")
    return Throughput(
        prefill_tokens_per_s=level * prompt_tokens / (best["ttft_p90_ms"] / 1000),
        decode_tokens_per_s=best["tokens_per_s"],
        concurrent_requests=level,
        source=f"measured at this client: the load sweep of {when} against the server {host}, {level} stream(s) at "
        f"once (its highest total tokens/s without a failure); prefill an estimate: {level} x {prompt_tokens} prompt "
        f"tokens within the {best['ttft_p90_ms']:,.0f} ms p90 TTFT",
        measured_here=False,
    ), None


def throughput_from_batch(result) -> Throughput | None:
    """The batching experiment's best batch that met its own latency budget (batch 1 if none did)."""
    rows = list(result.rows)
    if not rows:
        return None
    fitting = [row for row in rows if row["within_budget"]] or rows[:1]
    best = max(fitting, key=lambda row: row["tokens_per_s"])
    prompt_tokens = result.details["prompt_tokens"]
    return Throughput(
        prefill_tokens_per_s=best["batch_size"] * prompt_tokens / (best["prefill_ms"] / 1000),
        decode_tokens_per_s=best["tokens_per_s"],
        concurrent_requests=best["batch_size"],
        source=f"measured: the batching experiment of {result.created_at[:16].replace('T', ' ')}, batch "
        f"{best['batch_size']} "
        f"({'the largest within its budget' if best['within_budget'] else 'none met its budget'})",
    )


def scaled_throughput(
    throughput: Throughput, *, measured_on: HardwarePreset, target: HardwarePreset
) -> Throughput | None:
    """An estimate of a measured throughput on other hardware: decode scales with bandwidth, prefill with FLOP/s.

    None when either machine lacks the figures. Prefill falls back to the bandwidth ratio when a FLOP/s is missing.
    """
    bandwidth_here, bandwidth_there = measured_on.bandwidth_bytes_per_s.value, target.bandwidth_bytes_per_s.value
    if not bandwidth_here or not bandwidth_there:
        return None
    flops_here, flops_there = measured_on.peak_flops.value, target.peak_flops.value
    prefill_ratio = flops_there / flops_here if flops_here and flops_there else bandwidth_there / bandwidth_here
    return Throughput(
        prefill_tokens_per_s=throughput.prefill_tokens_per_s * prefill_ratio,
        decode_tokens_per_s=scaled_by_bandwidth(
            throughput.decode_tokens_per_s, measured_bandwidth=bandwidth_here, target_bandwidth=bandwidth_there
        ),
        concurrent_requests=throughput.concurrent_requests,
        source=f"estimate: {throughput.source}, scaled to {target.name} by memory bandwidth "
        f"({bandwidth_there / bandwidth_here:,.1f}x) "
        f"and, for prefill, {'peak FLOP/s' if flops_here and flops_there else 'bandwidth'} ({prefill_ratio:,.1f}x)",
    )


def throughput_on(target: HardwarePreset, *, throughput: Throughput, here: HardwarePreset) -> Throughput | None:
    """The throughput to price `target` with: as given for this machine, a typed or a server's rate; else scaled.

    None when a measured rate cannot be scaled (a machine lacks its bandwidth).
    """
    if not throughput.measured_here or target.key == here.key:
        return throughput
    return scaled_throughput(throughput, measured_on=here, target=target)


def cost_across_hardware(
    machines: list[HardwarePreset], *, throughput: Throughput, here: HardwarePreset
) -> list[tuple[str, float]]:
    """(machine name, dollars per million output tokens) for every machine with a price and a usable throughput."""
    rows = []
    for machine in machines:
        rate = throughput_on(machine, throughput=throughput, here=here)
        if rate is None or machine.price_per_hour.value is None:
            continue
        price = machine.price_per_hour.value
        rows.append(
            (machine.name, cost_per_million_tokens(price_per_hour=price, tokens_per_s=rate.decode_tokens_per_s))
        )
    return rows


def cost_by_batch(batch_result, *, target: HardwarePreset, here: HardwarePreset) -> list[tuple[int, float]] | None:
    """(batch size, dollars per million output tokens on `target`) for each measured batch of the batching experiment.

    The same throughput and scaling as the page's cards: measured here, scaled to other hardware by bandwidth.
    None when the rates cannot be scaled to `target` (a bandwidth is missing) or it has no price.
    """
    price = target.price_per_hour.value
    prompt_tokens = batch_result.details["prompt_tokens"]
    points = []
    for row in batch_result.rows:
        measured = Throughput(
            prefill_tokens_per_s=row["batch_size"] * prompt_tokens / (row["prefill_ms"] / 1000),
            decode_tokens_per_s=row["tokens_per_s"],
            concurrent_requests=row["batch_size"],
            source="measured: the batching experiment",
        )
        rate = throughput_on(target, throughput=measured, here=here)
        if rate is None or price is None:
            return None
        points.append(
            (row["batch_size"], cost_per_million_tokens(price_per_hour=price, tokens_per_s=rate.decode_tokens_per_s))
        )
    return points
