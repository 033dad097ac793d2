"""Experiments on the tiny random model: mechanics, exact byte counts, the result contract, options and stopping."""

from __future__ import annotations

import copy
import json
import threading

import pytest
import torch
from conftest import SMALL, make_tiny_model

from engine import GenerationCancelled, SettingsError, TraceFormatError
from engine.experiments import EXPERIMENTS, load_result, run_experiment, save_result, saved_results
from engine.experiments.batch import BatchOptions
from engine.experiments.common import PeakMemory, prompt_ids
from engine.experiments.kv_cache import KvCacheOptions
from engine.experiments.prefill import PrefillOptions
from engine.experiments.result import ExperimentResult, check_result_dict, default_result_path
from engine.experiments.roofline import RooflineOptions
from engine.experiments.train_vs_infer import TrainVsInferOptions
from engine.quantize import int8_weight_only_support, quantize_int8_weight_only, weight_bytes_read_per_token


@pytest.fixture(scope="module")
def long_tiny():
    """The tiny model with room for a 256-token prompt."""
    return make_tiny_model(context=1024)


@pytest.fixture(scope="module")
def results(long_tiny):
    """Every experiment run once on the tiny model, with its progress events."""
    found = {}
    for name, options in SMALL.items():
        events = []
        found[name] = (run_experiment(long_tiny, name, options, on_progress=events.append), events)
    return found


def round_trip(result: ExperimentResult) -> dict:
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))


@pytest.mark.parametrize("name", list(SMALL))
def test_each_result_follows_the_contract_and_survives_a_file(results, name, tmp_path, long_tiny):
    result, events = results[name]
    data = round_trip(result)
    check_result_dict(data)
    assert data["kind"] == "experiment"
    assert data["experiment"] == name
    assert data["model"]["name"] == long_tiny.facts.name
    assert data["hardware"]["device"] == "cpu"
    assert data["versions"]["torch"]
    assert data["settings"] == SMALL[name].to_dict()
    assert data["finding"].endswith(".")
    assert len(data["finding"]) > 40
    path = save_result(result, tmp_path / f"{name}.json")
    assert load_result(path) == ExperimentResult.from_dict(data)
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert events[-1].message == "Done"


def test_prefill_reads_longer_prompts_faster_per_token(results):
    result, _ = results["prefill"]
    speed = dict(zip(result.column("prompt_tokens"), result.column("prefill_tokens_per_s"), strict=True))
    assert speed[256] > speed[16]  # one pass over 256 tokens costs far less than 16 passes over 16
    for row in result.rows:
        assert row["prefill_tokens_per_s"] == pytest.approx(row["prompt_tokens"] / (row["prefill_ms"] / 1000))


def test_prefill_caps_lengths_at_the_context_window():
    small = make_tiny_model(context=64)
    result = run_experiment(small, "prefill", PrefillOptions(prompt_lengths=(16, 1024), repeats=1, decode_tokens=2))
    assert result.column("prompt_tokens") == [16, 64 - 2 - 1]
    assert result.details["capped_lengths"] == [1024]


def test_kv_cache_runs_agree_and_the_cache_holds_the_formulas_bytes(results, long_tiny):
    result, _ = results["kv-cache"]
    assert result.details["same_tokens"]
    on, off = [r for r in result.rows if r["kv_cache"]], [r for r in result.rows if not r["kv_cache"]]
    assert len(on) == len(off) == 16
    assert all(r["kv_cache_bytes"] == 0 for r in off)
    prompt_tokens = result.details["runs"]["on"]["prompt_tokens"]
    for row in on:  # after step s the cache holds the prompt and the s tokens fed back so far
        assert row["kv_cache_bytes"] == long_tiny.facts.kv_bytes_per_token * (prompt_tokens + row["step"])


def test_batching_multiplies_the_cache_and_the_throughput(results):
    result, _ = results["batch"]
    one, four = result.rows
    assert four["kv_cache_bytes"] == 4 * one["kv_cache_bytes"]
    assert four["tokens_per_s"] > one["tokens_per_s"]
    serving = result.details["serving"]
    assert serving["kv_bytes_all_users"] == serving["users"] * serving["kv_bytes_per_user"]


def test_batch_stops_early_when_memory_would_run_short(long_tiny, monkeypatch):
    from engine.experiments import batch

    monkeypatch.setattr(batch, "free_memory_bytes", lambda device: 10_000_000)  # room for small batches only
    result = run_experiment(
        long_tiny, "batch", BatchOptions(batch_sizes=(1, 2, 4096), prompt_tokens=16, decode_tokens=2)
    )
    assert result.column("batch_size") == [1, 2]
    assert result.details["stopped_early"].startswith("batch 4096 would need")


def test_roofline_measures_the_machine_and_counts_bytes_per_format(results):
    result, _ = results["roofline"]
    assert result.details["bandwidth_bytes_per_s"] > 1e8
    assert result.details["peak_flops"] > 1e8
    rows = {row["dtype"]: row for row in result.rows}
    assert rows["float32"]["weight_bytes_read"] == 2 * rows["bfloat16"]["weight_bytes_read"]
    for row in result.rows:
        assert 0 < row["mbu"] < 1
        assert 0 < row["mfu"] <= 1  # a benchmark slower than the model's own prefill is replaced by it
        assert row["peak_flops"] == result.details["peak_flops_by_dtype"][row["compute_dtype"]]
        assert row["ceiling_tokens_per_s"] == pytest.approx(
            result.details["bandwidth_bytes_per_s"] / row["bytes_per_token"]
        )
    if int8_weight_only_support(torch.device("cpu")) is None:
        assert rows["int8"]["weight_bytes_read"] < rows["bfloat16"]["weight_bytes_read"]
    else:
        assert "int8" in result.details["skipped"]


def test_int8_weights_store_a_quarter_and_predict_the_same_token(long_tiny):
    if int8_weight_only_support(torch.device("cpu")) is not None:
        pytest.skip("no int8 weight-only kernel on this CPU")
    model = long_tiny.model
    quantized = quantize_int8_weight_only(model)
    ids = prompt_ids(long_tiny, 24)
    with torch.inference_mode():
        expected, got = model(input_ids=ids).logits[0, -1], quantized(input_ids=ids).logits[0, -1]
    assert torch.allclose(got, expected, atol=0.05 * expected.abs().max().item())
    embedding = model.get_input_embeddings().weight  # not tied to the output head here: one row read per token
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert (
        weight_bytes_read_per_token(model)
        == long_tiny.facts.weight_bytes - embedding.numel() * 4 + embedding.shape[1] * 4 + buffers
    )
    assert weight_bytes_read_per_token(quantized) < 0.35 * weight_bytes_read_per_token(
        model
    )  # int8 + one float scale per row


def test_train_vs_infer_counts_gradients_and_adam_state_and_puts_the_weights_back(long_tiny, results):
    result, _ = results["train-vs-infer"]
    rows = {row["mode"]: row for row in result.rows}
    weights = long_tiny.facts.weight_bytes
    assert rows["train"]["gradients_bytes"] == weights
    tensors = len({id(p) for p in long_tiny.model.parameters()})
    assert (
        rows["train"]["optimizer_bytes"] == 2 * weights + 4 * tensors
    )  # two moments per weight, one step count per tensor
    assert rows["infer"]["gradients_bytes"] == rows["infer"]["optimizer_bytes"] == 0
    assert rows["infer"]["kv_cache_bytes"] > 0
    before = copy.deepcopy(long_tiny.model.state_dict())
    run_experiment(long_tiny, "train-vs-infer", SMALL["train-vs-infer"])
    after = long_tiny.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)  # trained in place, then restored exactly
    assert not long_tiny.model.training
    assert all(p.grad is None for p in long_tiny.model.parameters())
    published = result.details["published_models"]
    assert {m["name"] for m in published} >= {"Llama-3.1-8B", "Llama-3.1-70B"}
    assert all(m["source"].startswith("https://") for m in published)
    llama = next(m for m in published if m["name"] == "Llama-3.1-8B")
    assert llama["kv_bytes_per_token"] == 2 * 32 * 8 * 128 * 2 == 131_072  # bfloat16 cache


def test_stopping_mid_training_still_restores_the_weights(long_tiny):
    before = copy.deepcopy(long_tiny.model.state_dict())
    checks = {"count": 0}

    class StopLate:
        def is_set(self) -> bool:  # set from the third progress check on: inside the training block
            checks["count"] += 1
            return checks["count"] >= 4

    with pytest.raises(GenerationCancelled):
        run_experiment(long_tiny, "train-vs-infer", SMALL["train-vs-infer"], cancel=StopLate())
    assert checks["count"] >= 4
    after = long_tiny.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_a_set_flag_stops_every_experiment_before_it_measures(long_tiny):
    stop = threading.Event()
    stop.set()
    for name in [name for name, experiment in EXPERIMENTS.items() if not experiment.remote]:  # (server-load:
        with pytest.raises(GenerationCancelled, match="stopped") as caught:  # tests/test_remote.py)
            run_experiment(long_tiny, name, SMALL[name], cancel=stop)
        assert caught.value.partial is None  # nothing measured, nothing kept


@pytest.mark.parametrize("name", ["prefill", "batch", "roofline", "kv-cache", "energy"])
def test_a_stopped_experiment_keeps_the_points_it_measured_marked_stopped(long_tiny, tmp_path, name):
    """Seen: Stop threw away every point already measured. Now they come back as a result marked stopped."""
    whole = run_experiment(long_tiny, name, SMALL[name])
    checks, stop_at = {"count": 0}, {"prefill": 5, "roofline": 3, "kv-cache": 6, "energy": 1}.get(name, 2)

    class StopPartWay:  # stop at a later progress check: after at least one row, before the last
        def is_set(self) -> bool:
            checks["count"] += 1
            return checks["count"] > stop_at

    with pytest.raises(GenerationCancelled) as caught:
        run_experiment(long_tiny, name, SMALL[name], cancel=StopPartWay())
    kept = caught.value.partial
    assert kept is not None, "the measured points were thrown away"
    assert 1 <= len(kept.rows) < len(whole.rows)
    assert [row.keys() for row in kept.rows] == [row.keys() for row in whole.rows[: len(kept.rows)]]
    assert kept.stopped.startswith("the experiment was stopped")
    assert kept.finding.startswith("Stopped after") and "draws no finding" in kept.finding
    path = save_result(kept, tmp_path / f"{name}.json")
    again = load_result(path)  # a valid file: the contract allows a stopped run's missing end-of-run figures
    assert again.stopped == kept.stopped and again.rows == kept.rows


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("prefill", PrefillOptions(prompt_lengths=()), "prompt lengths"),
        ("prefill", PrefillOptions(prompt_lengths=(16, 0)), "prompt lengths"),
        ("prefill", PrefillOptions(decode_tokens=1), "decode tokens must be at least 2"),
        ("batch", BatchOptions(batch_sizes=(1, -4)), "batch sizes"),
        ("batch", BatchOptions(budget_s=0), "budget"),
        ("kv-cache", KvCacheOptions(new_tokens=0), "new tokens"),
        ("roofline", RooflineOptions(repeats=0), "repeats"),
        ("train-vs-infer", TrainVsInferOptions(train_tokens=0), "train tokens"),
        ("roofline", PrefillOptions(), "takes RooflineOptions"),
        ("soup", None, "unknown experiment 'soup'"),
    ],
)
def test_impossible_options_are_refused_with_a_reason(long_tiny, name, options, message):
    with pytest.raises(SettingsError, match=message):
        run_experiment(long_tiny, name, options)


def test_peak_memory_sees_a_short_lived_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(50_000_000)  # 200 MB, freed before the block ends
        del block
    assert memory.peak_bytes - memory.before_bytes > 150_000_000


def valid_dict(results) -> dict:
    return round_trip(results["roofline"][0])


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: d.pop("rows"), "'rows' is missing"),
        (lambda d: d.update(kind="trace"), "not an experiment result"),
        (lambda d: d.update(experiment="soup"), "experiment 'soup' is unknown"),
        (lambda d: d.pop("bandwidth_bytes_per_s"), "'bandwidth_bytes_per_s' is missing"),
        (lambda d: d.update(rows=[]), "no measured rows"),
        (lambda d: d["rows"][0].pop("mbu"), r"rows\[0\]: the field 'mbu' is missing"),
        (lambda d: d["rows"][1].update(mbu="high"), r"rows\[1\].mbu: expected a number, got str 'high'"),
        (lambda d: d["rows"][0].update(extra={"nested": 1}), r"rows\[0\].extra: expected a number, text"),
        (lambda d: d.update(schema_version=99), "schema_version 99"),
        (lambda d: d.update(finding=None), "the field 'finding' is missing"),
        (lambda d: d.update(finding=7), "result.finding: expected text"),
    ],
)
def test_a_broken_result_is_refused_naming_what_is_wrong(results, break_it, message):
    data = valid_dict(results)
    break_it(data)
    with pytest.raises(TraceFormatError, match=message):
        ExperimentResult.from_dict(data)


def test_saved_results_are_listed_newest_first_per_experiment(results):
    older = save_result(results["batch"][0], default_result_path("batch"))
    newer = save_result(results["batch"][0], default_result_path("batch"))
    save_result(results["prefill"][0], default_result_path("prefill"))
    (older.parent / "batch-notes.json").write_text("{}")  # not a result name: not listed
    assert saved_results("batch") == [newer, older]
