"""Decode paths: the static decoder computes what transformers computes, and each path says when it cannot run."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_tiny_model

from engine.errors import PromptError
from engine.generate import prepare_request, stream_generate
from engine.paths import PathUnavailable, PreparedPath, path_unavailable, prepare_path
from engine.settings import GenerationSettings
from engine.static_decoder import RotaryTable, StaticDecoder, use_rotary_table


def test_the_static_decoder_computes_what_the_transformers_model_computes(tiny):
    ids = torch.tensor([[5, 17, 42, 99, 3, 64, 7, 250, 11, 30]])  # (1, 10)
    decoder = StaticDecoder(tiny.model, max_len=32)
    with torch.inference_mode():
        expected = tiny.model(input_ids=ids).logits[0]  # (10, V): every position, no cache
        ours = decoder.forward(ids[:, :6], torch.arange(6))  # prefill the first six into the static cache
        assert torch.allclose(ours[0], expected[5], atol=1e-5)
        for position in range(6, 10):  # then one token at a time against the cache
            ours = decoder.forward(ids[:, position : position + 1], torch.tensor([position]))
            assert torch.allclose(ours[0], expected[position], atol=1e-5), f"position {position}"


def test_the_rotary_table_holds_what_the_model_computes_and_length_dependent_ones_are_left_alone(tiny):
    decoder = StaticDecoder(tiny.model, max_len=32)
    table, own = decoder.model.model.rotary_emb, tiny.model.model.rotary_emb
    assert isinstance(table, RotaryTable) and not isinstance(own, RotaryTable)  # the loaded model keeps its own
    positions = torch.tensor([[0, 1, 7, 31]])  # (1, 4)
    probe = torch.zeros(1)
    for ours, expected in zip(table(probe, positions), own(probe, positions), strict=True):
        assert ours.shape == expected.shape == (1, 4, tiny.model.config.head_dim)
        assert torch.equal(ours, expected)  # the same function's values, looked up instead of recomputed
    scaled = copy.deepcopy(tiny.model)
    scaled.model.rotary_emb.rope_type = "dynamic"  # frequencies that change with the sequence's length
    assert not use_rotary_table(scaled, max_len=32, device=torch.device("cpu"))
    assert not isinstance(scaled.model.rotary_emb, RotaryTable)


def test_the_static_cache_reports_the_bytes_written_not_allocated(tiny):
    decoder = StaticDecoder(tiny.model, max_len=32)
    decoder.filled = 10
    assert decoder.kv_cache_bytes() == 10 * tiny.facts.kv_bytes_per_token
    assert decoder.allocated_bytes() == 32 * tiny.facts.kv_bytes_per_token


def test_a_model_that_cannot_be_compiled_gets_a_sentence_and_eager_still_runs():
    from transformers import LlamaForCausalLM, MambaForCausalLM

    from engine import LoadedModel

    assert MambaForCausalLM._can_compile_fullgraph is False  # what transformers says of such models

    class RecurrentModel(LlamaForCausalLM):  # a stand-in: a tiny Mamba has no attention facts to load
        _can_compile_fullgraph = False

    tiny = make_tiny_model()
    loaded = LoadedModel.from_objects(RecurrentModel(tiny.model.config), tiny.tokenizer, name="tiny-recurrent")
    reason = path_unavailable(loaded, "compiled")
    assert reason is not None and "RecurrentModel cannot be compiled as one graph" in reason
    with pytest.raises(PathUnavailable, match="the compiled path is unavailable: RecurrentModel"):
        prepare_path(loaded, "compiled")
    assert prepare_path(loaded, "fastest").name == "eager"  # the best this model can have here
    assert path_unavailable(loaded, "eager") is None
    assert "no decode path called 'turbo'" in path_unavailable(loaded, "turbo")


def test_a_request_the_static_cache_cannot_hold_is_refused_before_any_work(tiny):
    path = PreparedPath(name="compiled", loaded=tiny, decoder=StaticDecoder(tiny.model, max_len=16))
    request = prepare_request(tiny, "hello there", settings=GenerationSettings(max_new_tokens=20, chat_template=False))
    with pytest.raises(PromptError, match="holds 16 positions.*needs 31"):
        next(stream_generate(tiny, request, path=path))
    uncached = prepare_request(tiny, "hi", settings=GenerationSettings(max_new_tokens=2, kv_cache=False))
    with pytest.raises(PromptError, match="always uses its KV cache"):
        next(stream_generate(tiny, uncached, path=path))


def test_a_failed_compile_clears_the_cache_and_tries_once_more(tiny, monkeypatch, tmp_path):
    import engine.paths as paths

    monkeypatch.setattr(paths, "compile_cache_folder", lambda device: tmp_path / "compiled")
    (tmp_path / "compiled").mkdir()
    (tmp_path / "compiled" / "half-written").write_bytes(b"\0" * 10)
    calls = []

    def compile_path(loaded, name, *, max_len, folder, report):
        calls.append(sorted(p.name for p in folder.iterdir()) if folder.exists() else None)
        if len(calls) == 1:
            raise RuntimeError("CppCompileError: truncated object file")
        return PreparedPath(name=name, loaded=loaded, decoder=StaticDecoder(loaded.model, max_len=8), cache="cold")

    monkeypatch.setattr(paths, "compile_path", compile_path)
    messages = []
    path = prepare_path(make_tiny_model(), "compiled", on_progress=messages.append)
    assert path.cache == "cold"
    assert calls == [["half-written"], None]  # the second try started from an empty (removed) cache folder
    assert any("truncated object file" in message for message in messages)


def test_a_compile_that_fails_twice_is_one_sentence(monkeypatch, tmp_path):
    import engine.paths as paths

    monkeypatch.setattr(paths, "compile_cache_folder", lambda device: tmp_path / "compiled")

    def compile_path(loaded, name, **options):
        raise RuntimeError("out of memory while compiling\nlong traceback")

    monkeypatch.setattr(paths, "compile_path", compile_path)
    with pytest.raises(PathUnavailable, match=r"^the compiled path is unavailable: compiling failed \(out of memory"):
        prepare_path(make_tiny_model(), "compiled")


def speed_row(path: str, tokens_per_s: float, agreement: float, mbu: float) -> dict:
    return {"path": path, "decode_tokens_per_s": tokens_per_s, "token_agreement": agreement, "mbu": mbu}


def test_the_speed_finding_follows_from_its_rows_in_every_case():
    from engine.experiments.speed import finding

    eager = speed_row("eager", 14.0, 1.0, 0.25)
    compiled = speed_row("compiled", 28.0, 1.0, 0.5)
    int8 = speed_row("compiled-int8", 56.0, 0.97, 0.4)
    lossy = speed_row("compiled-int8", 56.0, 0.90, 0.4)
    none = {"unavailable": {}}
    said = finding([eager, compiled, int8], none)
    assert said.startswith("The compiled-int8 path decoded 56.0 tokens/s, 4.0x eager's 14.0")
    assert "97.0% of next tokens" in said and "faster still" not in said
    said = finding([eager, compiled, lossy], none)
    assert said.startswith("The compiled path decoded 28.0 tokens/s, 2.0x eager's 14.0")
    assert "compiled-int8 was faster still (56.0 tokens/s) but agreed on only 90.0%, under the 95%" in said
    said = finding([eager, lossy], none)
    assert said.startswith("No faster path kept the answers: eager decoded 14.0") and "only 90.0%" in said
    said = finding([eager], {"unavailable": {"compiled": "no C++ compiler"}})
    assert said == "Only the eager path ran (14.0 tokens/s, 25% of the bandwidth ceiling); compiled: no C++ compiler."
    assert finding([], none) == "No path ran."


# ---- compiled paths on the tiny model: real torch.compile (tens of seconds cold, seconds with the disk cache) ----


@pytest.fixture(scope="module")
def roomy_tiny():
    return make_tiny_model(context=256)


@pytest.mark.slow
def test_the_compiled_path_decodes_eagers_tokens_and_records_every_one(roomy_tiny):
    from engine.run import run_trace
    from engine.trace import Trace

    path = prepare_path(roomy_tiny, "compiled")
    assert prepare_path(roomy_tiny, "compiled") is path  # prepared once per process
    settings = GenerationSettings(max_new_tokens=24, chat_template=False, stop_at_eos=False)
    eager = run_trace(roomy_tiny, "soup of the day", settings=settings)
    fast = run_trace(roomy_tiny, "soup of the day", settings=settings, path=path)
    assert [e.token_id for e in fast.events] == [e.token_id for e in eager.events]  # greedy: the same answer
    for ours, theirs in zip(fast.events, eager.events, strict=True):
        assert [alt.token for alt in ours.top] == [alt.token for alt in theirs.top]  # the same five, same order
        assert ours.logprob == pytest.approx(theirs.logprob, abs=1e-4)
    prompt_tokens = len(fast.prompt["tokens"])
    per_token = roomy_tiny.facts.kv_bytes_per_token
    assert [e.kv_cache_bytes for e in fast.events] == [(prompt_tokens + i) * per_token for i in range(24)]
    assert Trace.from_dict(fast.to_dict()).path == fast.path  # the file format keeps it, and it validates
    assert fast.path["name"] == "compiled" and fast.path["cache"] in ("cold", "warm") and fast.path["prepare_s"] > 0
    assert fast.path["options"]["static_cache_positions"] == 256


@pytest.mark.slow
def test_the_int8_path_reads_a_quarter_of_the_weight_bytes_and_keeps_the_contract(roomy_tiny):
    from engine.quantize import weight_bytes_read_per_token
    from engine.run import run_trace
    from engine.trace import Trace

    path = prepare_path(roomy_tiny, "compiled-int8")
    fast = run_trace(roomy_tiny, "soup", settings=GenerationSettings(max_new_tokens=8, chat_template=False,
                                                                       stop_at_eos=False), path=path)  # fmt: skip
    assert len(fast.events) == 8 and all(len(e.top) == 5 for e in fast.events)
    Trace.from_dict(fast.to_dict())
    assert fast.path["weights"] == "int8" and fast.path["dtype"] == "bfloat16"
    eager_bytes = weight_bytes_read_per_token(roomy_tiny.model)
    int8_bytes = weight_bytes_read_per_token(path.model)
    assert 0.25 * eager_bytes < int8_bytes < 0.3 * eager_bytes  # 1 byte per weight instead of 4, plus row scales
    assert fast.events[-1].kv_cache_bytes == (len(fast.prompt["tokens"]) + 7) * roomy_tiny.facts.kv_bytes_per_token // 2


@pytest.mark.slow
def test_a_second_process_finds_the_compiled_code_on_disk(tiny_folder, tmp_path):
    from conftest import engine_cli

    from engine.trace import load_trace

    def trace_once(name: str) -> dict:
        out = tmp_path / f"{name}.json"
        done = engine_cli("trace", "--model", str(tiny_folder), "--path", "compiled", "--prompt", "soup",
                          "--raw", "--max-new-tokens", "4", "--out", str(out), timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return load_trace(out).path

    first, second = trace_once("first"), trace_once("second")
    assert second["cache"] == "warm"
    assert second["prepare_s"] < first["prepare_s"] or first["cache"] == "warm"


@pytest.mark.slow
def test_fastest_is_the_last_path_that_can_run_here(roomy_tiny, monkeypatch):
    import engine.paths as paths

    assert prepare_path(roomy_tiny, "fastest").name == "compiled-bf16"  # a compiler and bfloat16 here
    monkeypatch.setattr(paths, "available_dtypes", lambda device: ["float32"])
    assert paths.path_unavailable(roomy_tiny, "compiled-bf16") == "cpu here has no bfloat16 support"
    assert prepare_path(roomy_tiny, "fastest").name == "compiled-int8"  # next fastest as measured


def test_a_row_sum_linear_computes_what_the_linear_layer_does():
    import torch
    from torch import nn

    from engine.matvec import RowSumLinear

    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    same = RowSumLinear(linear, weight_dtype=torch.float32)
    assert same.weight is linear.weight  # float32 keeps the very parameter (a tied embedding stays tied)
    with torch.no_grad():
        for rows in (1, 7):  # a decode step (multiply-and-sum) and a prompt (one matrix product)
            x = torch.randn(1, rows, 96)  # (1, T, in)
            assert torch.allclose(same(x), linear(x), atol=1e-5)  # float32 sums in another order
            half = RowSumLinear(linear, weight_dtype=torch.bfloat16)(x)
            rounded = nn.functional.linear(x, linear.weight.to(torch.bfloat16).float(), linear.bias)
            assert torch.allclose(half, rounded, atol=1e-5)  # only the weights are rounded: float32 arithmetic
            assert not torch.allclose(half, linear(x), atol=1e-5)  # and that rounding shows


@pytest.mark.slow
def test_the_bf16_path_reads_half_the_weight_bytes_in_float32_arithmetic(roomy_tiny):
    from engine.quantize import weight_bytes_read_per_token
    from engine.run import run_trace

    path = prepare_path(roomy_tiny, "compiled-bf16")
    settings = GenerationSettings(max_new_tokens=8, chat_template=False, stop_at_eos=False)
    fast = run_trace(roomy_tiny, "soup", settings=settings, path=path)
    eager = run_trace(roomy_tiny, "soup", settings=settings)
    assert fast.path["weights"] == "bfloat16" and fast.path["dtype"] == "float32" and len(fast.events) == 8
    assert fast.path["options"]["torch_compile"] == {}  # freezing would fold the weights back into float32
    ratio = weight_bytes_read_per_token(path.model) / weight_bytes_read_per_token(roomy_tiny.model)
    assert 0.5 <= ratio < 0.52  # 2 bytes per weight instead of 4; the norms stay float32
    first = fast.events[0].logprob, eager.events[0].logprob  # the same prompt: only rounded weights differ
    assert first[0] == pytest.approx(first[1], abs=0.05) and first[0] != first[1]
    assert fast.events[-1].kv_cache_bytes == eager.events[-1].kv_cache_bytes  # the cache stays float32


@pytest.mark.slow
def test_the_memory_wall_measures_a_compiled_path_under_the_same_ceiling(roomy_tiny, monkeypatch):
    import engine.paths as paths
    from engine.experiments import run_experiment
    from engine.experiments.roofline import RooflineOptions

    monkeypatch.setattr(paths, "available_dtypes", lambda device: ["float32"])  # and one path that cannot run
    options = RooflineOptions(repeats=2, bandwidth_mb=32, decode_tokens=6, prefill_tokens=16, include_int8=False,
                              paths=("compiled", "compiled-bf16"))  # fmt: skip
    result = run_experiment(roomy_tiny, "roofline", options)
    eager, compiled = result.rows[0], result.rows[-1]
    assert (eager["dtype"], compiled["dtype"]) == ("float32", "compiled") and len(result.rows) == 3  # + bfloat16
    assert (
        "compiled-bf16 path is unavailable: cpu here has no bfloat16 support"
        in result.details["skipped"]["compiled-bf16"]
    )
    per_token = roomy_tiny.facts.kv_bytes_per_token
    assert compiled["kv_bytes_read"] == 256 * per_token  # its static cache, read whole every step
    table_row = 2 * roomy_tiny.model.config.head_dim * 4  # a step's row of the rotary table (cos and sin, float32)
    extra = compiled["weight_bytes_read"] - eager["weight_bytes_read"]  # the same float32 weights, and that row
    assert 0 < extra <= table_row  # instead of eager's rotary frequencies
    bandwidth = result.details["bandwidth_bytes_per_s"]
    assert compiled["ceiling_tokens_per_s"] == pytest.approx(bandwidth / compiled["bytes_per_token"])
    assert compiled["mbu"] == pytest.approx(compiled["bytes_per_token"] * compiled["decode_tokens_per_s"] / bandwidth)
    assert "compiled read no fewer bytes" in result.finding  # a longer cache read: the finding says so


def test_the_memory_wall_refuses_a_prompt_the_compiled_cache_cannot_hold():
    from engine.errors import SettingsError
    from engine.experiments.roofline import RooflineOptions

    with pytest.raises(SettingsError, match="must fit their 512-position cache"):
        RooflineOptions(prefill_tokens=600, paths=("compiled",)).check()
    with pytest.raises(SettingsError, match="paths must be some of compiled, compiled-int8, compiled-bf16"):
        RooflineOptions(paths=("eager",)).check()
