"""Cost formulas against hand-computed values, the cited presets, workload plans, and energy counters."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_model

from engine import SettingsError, costs
from engine.energy import EnergyCounter, rapl_counter
from engine.experiments import run_experiment
from engine.experiments.energy import EnergyOptions


def test_cost_per_million_tokens_by_hand():
    # $2.00/h at 100 tokens/s: 360,000 tokens an hour, so 10^6 tokens cost 2 / 0.36 = $5.56
    assert costs.cost_per_million_tokens(price_per_hour=2.0, tokens_per_s=100) == pytest.approx(5.5556, abs=1e-4)
    assert costs.cost_per_million_tokens(price_per_hour=2.69, tokens_per_s=1000) == pytest.approx(0.7472, abs=1e-4)


def test_energy_and_dollar_efficiency_by_hand():
    assert costs.tokens_per_joule(tokens_per_s=100, watts=400) == 0.25  # 100 tokens each second from 400 J each second
    assert costs.tokens_per_dollar_hour(tokens_per_s=100, price_per_hour=2.0) == 50


def test_a_workload_plan_by_hand():
    workload = costs.Workload(requests_per_day=100_000, input_tokens=200, output_tokens=250, latency_target_s=10)
    throughput = costs.Throughput(prefill_tokens_per_s=1000, decode_tokens_per_s=50, concurrent_requests=1)
    plan = costs.plan_workload(workload, throughput, price_per_hour=2.0, power_watts=500)
    assert plan.request_seconds == pytest.approx(0.2 + 5.0)  # 200/1000 s reading + 250/50 s writing
    assert plan.meets_target
    assert plan.machines == 7  # 100,000 x 5.2 s = 520,000 busy seconds a day = 6.02 machine-days
    assert plan.monthly_cost == pytest.approx(7 * 2.0 * 730)
    assert plan.energy_kwh_per_day == pytest.approx(7 * 0.5 * 24)
    assert plan.energy_kwh_per_day_busy == pytest.approx(520_000 * 500 / 3.6e6)
    assert plan.cost_per_request == pytest.approx(2.0 * 5.2 / 3600)
    assert plan.output_cost_per_million_tokens == pytest.approx(2.0 / (50 * 3600) * 1e6)


def test_batching_divides_a_machine_between_users():
    workload = costs.Workload(requests_per_day=100_000, input_tokens=0, output_tokens=100, latency_target_s=10)
    alone = costs.plan_workload(
        workload, costs.Throughput(prefill_tokens_per_s=1, decode_tokens_per_s=50), price_per_hour=1, power_watts=100
    )
    together = costs.plan_workload(
        workload,
        costs.Throughput(prefill_tokens_per_s=1, decode_tokens_per_s=200, concurrent_requests=8),
        price_per_hour=1,
        power_watts=100,
    )
    assert alone.request_seconds == 2.0
    assert together.request_seconds == 4.0  # each user gets 200/8 = 25 tokens/s
    assert together.machines < alone.machines  # 8 at a time: 100,000 x 4 / 8 s vs 100,000 x 2 s of busy time


def test_a_target_no_machine_can_meet_needs_no_machines_and_says_so():
    workload = costs.Workload(requests_per_day=10, input_tokens=0, output_tokens=1000, latency_target_s=10)
    plan = costs.plan_workload(
        workload, costs.Throughput(prefill_tokens_per_s=1, decode_tokens_per_s=10), price_per_hour=1, power_watts=1
    )
    assert not plan.meets_target
    assert plan.machines == 0
    assert plan.monthly_cost == 0


def test_an_impossible_workload_is_refused():
    with pytest.raises(SettingsError, match="requests per day above 0"):
        costs.plan_workload(
            costs.Workload(requests_per_day=0, input_tokens=1, output_tokens=1, latency_target_s=1),
            costs.Throughput(prefill_tokens_per_s=1, decode_tokens_per_s=1),
            price_per_hour=1,
            power_watts=1,
        )


def test_every_preset_figure_has_a_source_and_the_kinds_asked_for_exist():
    presets = costs.load_presets()
    kinds = {preset.kind for preset in presets}
    assert {"laptop/desktop CPU", "consumer GPU", "cloud inference GPU", "datacenter GPU"} <= kinds
    assert {"h100", "h200"} <= {preset.key for preset in presets}
    for preset in presets:
        for name in costs.FIGURES:
            figure = getattr(preset, name)
            assert len(figure.source) > 20, (preset.key, name)
            assert figure.value is None or figure.value > 0
        assert preset.price_per_hour.value
        assert preset.power_watts.value
        assert preset.bandwidth_bytes_per_s.value
    h100 = next(p for p in presets if p.key == "h100")
    assert h100.bandwidth_bytes_per_s.value == 3.35e12
    assert "datasheet" in h100.bandwidth_bytes_per_s.source
    market = costs.market_projection()
    assert market["inference_capex_usd"] == 72e9
    assert market["training_capex_usd"] == 37e9
    assert "seed article" in market["source"]


def test_a_preset_without_a_source_is_refused(tmp_path):
    data = json.loads(costs.PRESETS_FILE.read_text())
    data["presets"][0]["power_watts"]["source"] = " "
    path = tmp_path / "presets.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SettingsError, match="power_watts has no source"):
        costs.load_presets(path)


def test_measured_throughput_scales_to_other_hardware_by_bandwidth():
    here = costs.custom_machine(price_per_hour=1, power_watts=100, bandwidth_bytes_per_s=20e9, peak_flops=0.5e12)
    there = costs.custom_machine(price_per_hour=2, power_watts=700, bandwidth_bytes_per_s=3.35e12, peak_flops=989e12)
    measured = costs.Throughput(prefill_tokens_per_s=500, decode_tokens_per_s=20, source="measured: a run")
    scaled = costs.scaled_throughput(measured, measured_on=here, target=there)
    assert scaled.decode_tokens_per_s == pytest.approx(20 * 3.35e12 / 20e9)
    assert scaled.prefill_tokens_per_s == pytest.approx(500 * 989e12 / 0.5e12)
    assert scaled.source.startswith("estimate:")
    unknown = costs.custom_machine(price_per_hour=1, power_watts=1, bandwidth_bytes_per_s=None, peak_flops=None)
    assert costs.scaled_throughput(measured, measured_on=unknown, target=there) is None


def test_this_machine_takes_measured_figures_from_results():
    tiny = make_tiny_model(context=256)
    roofline = run_experiment(tiny, "roofline", run_options("roofline"))
    machine = costs.this_machine(price_per_hour=0.1, power_watts=50, roofline=roofline)
    assert machine.bandwidth_bytes_per_s.value == roofline.details["bandwidth_bytes_per_s"]
    assert machine.bandwidth_bytes_per_s.source.startswith("measured here")
    assert machine.power_watts.value == 50  # no energy counter: the visitor's typed figure
    assert machine.power_watts.kind == "typed"
    assert machine.bandwidth_bytes_per_s.kind == machine.peak_flops.kind == "measured"
    batch = run_experiment(tiny, "batch", run_options("batch"))
    throughput = costs.throughput_from_batch(batch)
    assert throughput.concurrent_requests in batch.column("batch_size")
    assert throughput.source.startswith("measured")


def run_options(name: str):
    from engine.experiments.batch import BatchOptions
    from engine.experiments.roofline import RooflineOptions

    return {
        "roofline": RooflineOptions(repeats=2, bandwidth_mb=16, decode_tokens=4, prefill_tokens=16, include_int8=False),
        "batch": BatchOptions(batch_sizes=(1, 2), prompt_tokens=8, decode_tokens=4),
    }[name]


# ---- energy ---------------------------------------------------------------------------------------------------------


def fake_rapl(root, *, energy_uj: int, max_uj: int = 262_143_328_850):
    package = root / "intel-rapl:0"
    package.mkdir(parents=True, exist_ok=True)
    (package / "energy_uj").write_text(str(energy_uj))
    (package / "max_energy_range_uj").write_text(str(max_uj))
    (root / "intel-rapl:0:0").mkdir(exist_ok=True)  # a sub-zone (the cores): not counted twice


def test_rapl_is_read_in_joules_and_survives_a_wrap(tmp_path):
    fake_rapl(tmp_path, energy_uj=5_000_000)
    counter = rapl_counter(tmp_path)
    assert counter.read() == 5.0
    assert counter.name.startswith("measured: RAPL")
    assert counter.joules_between(262_000.0, 2.0) == pytest.approx(2.0 + 262_143.32885 - 262_000.0)
    assert rapl_counter(tmp_path / "nothing-here") is None


def test_the_energy_experiment_measures_joules_per_token_with_a_counter(monkeypatch):
    from engine.experiments import energy

    tiny = make_tiny_model()
    clock = {"joules": 100.0}

    def read() -> float:  # 1 J more at every reading: 1 J between the two readings around a run
        clock["joules"] += 1.0
        return clock["joules"]

    monkeypatch.setattr(energy, "energy_counter", lambda device: EnergyCounter("measured: a test counter", read))
    result = run_experiment(tiny, "energy", EnergyOptions(prompt="soup", new_tokens=8, runs=2))
    for row in result.rows:
        assert row["energy_j"] == 1.0
        assert row["tokens"] == 8
        assert row["tokens_per_joule"] == 8.0
        assert row["average_power_w"] == pytest.approx(1.0 / row["time_s"])
    assert "8.00 tokens per joule" in result.finding


def test_without_a_counter_energy_is_left_empty_and_the_finding_says_why():
    result = run_experiment(make_tiny_model(), "energy", EnergyOptions(prompt="soup", new_tokens=4, runs=1))
    if result.details["energy_source"] is None:  # this VM: no NVIDIA GPU, no RAPL
        assert result.rows[0]["energy_j"] is None
        assert "no energy counter" in result.finding
    else:
        assert result.rows[0]["energy_j"] > 0


def test_every_chart_prices_the_chosen_preset_like_the_card(tmp_path):
    """The card and both charts use one throughput source and one scaling (the H100 showed $0.60 vs ~$65 before)."""
    from engine.experiments.batch import BatchOptions
    from engine.experiments.roofline import RooflineOptions

    tiny = make_tiny_model(context=256)
    roofline = run_experiment(
        tiny, "roofline", RooflineOptions(repeats=2, bandwidth_mb=32, decode_tokens=4, prefill_tokens=16)
    )
    batch = run_experiment(tiny, "batch", BatchOptions(batch_sizes=(1, 2, 4), prompt_tokens=8, decode_tokens=4))
    here = costs.this_machine(price_per_hour=0.05, power_watts=65, roofline=roofline)
    h100 = next(preset for preset in costs.load_presets() if preset.key == "h100")
    base = costs.throughput_from_batch(batch)  # the card's source: the batching experiment's best batch
    card_rate = costs.throughput_on(h100, throughput=base, here=here)
    workload = costs.Workload(requests_per_day=1000, input_tokens=10, output_tokens=10, latency_target_s=600)
    card = costs.plan_workload(workload, card_rate, price_per_hour=h100.price_per_hour.value, power_watts=700)
    across = dict(costs.cost_across_hardware([here, h100], throughput=base, here=here))
    by_batch = dict(costs.cost_by_batch(batch, target=h100, here=here))
    assert across["Datacenter GPU (NVIDIA H100 SXM)"] == pytest.approx(card.output_cost_per_million_tokens)
    assert by_batch[base.concurrent_requests] == pytest.approx(card.output_cost_per_million_tokens)
    # and on this machine itself nothing is scaled: the batch chart is the measured rate at this price
    here_by_batch = dict(costs.cost_by_batch(batch, target=here, here=here))
    for row in batch.rows:
        expected = costs.cost_per_million_tokens(price_per_hour=0.05, tokens_per_s=row["tokens_per_s"])
        assert here_by_batch[row["batch_size"]] == pytest.approx(expected)
    unmeasured = costs.this_machine(price_per_hour=0.05, power_watts=65)  # no memory-wall result: cannot scale
    assert costs.cost_by_batch(batch, target=h100, here=unmeasured) is None
