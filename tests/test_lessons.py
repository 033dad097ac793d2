"""Lessons computed from their numbers: every branch of each verdict and finding, on hand-made measurements."""

from __future__ import annotations

import pytest

from engine.experiments import kv_cache, prefill, roofline, train_vs_infer


def mode_row(mode: str, *, time_ms: float, peak: int, tokens: int, kv: int = 0) -> dict:
    """A measured row of the training-vs-inference experiment, as `run` makes it."""
    return {"mode": mode, "time_ms": time_ms, "peak_memory_bytes": peak, "tokens": tokens, "kv_cache_bytes": kv}


def details_for(tiny, infer: dict, train: dict) -> dict:
    return train_vs_infer.projection(tiny, infer, train, context_tokens=2048)


def test_the_verdict_says_wrong_per_request_when_training_took_more_memory(tiny):
    infer = mode_row("infer", time_ms=2_000, peak=900_000_000, tokens=100, kv=1_000_000)
    train = mode_row("train", time_ms=1_300, peak=3_000_000_000, tokens=128)
    text = train_vs_infer.verdict(infer, train, details_for(tiny, infer, train), parameters=135_000_000)
    assert text.startswith("Per request it is wrong here: one training step of 128 tokens peaked at 3.00 GB, 3.3x")
    assert "training did 3.8x the arithmetic" in text  # 6 x 128 vs 2 x 100 tokens
    assert text.endswith("not for a single request.")


def test_the_verdict_says_it_holds_when_the_request_took_more_memory(tiny):
    infer = mode_row("infer", time_ms=9_000, peak=5_000_000_000, tokens=2_000, kv=4_000_000_000)
    train = mode_row("train", time_ms=300, peak=2_000_000_000, tokens=16)
    text = train_vs_infer.verdict(infer, train, details_for(tiny, infer, train), parameters=135_000_000)
    assert text.startswith("Per request it holds here: one training step of 16 tokens peaked at 2.00 GB, 40% of the")
    assert "this request did 41.7x the training step's arithmetic" in text  # 2 x 2000 vs 6 x 16 tokens
    assert text.endswith("held even for a single request on this machine.")
    assert "is wrong" not in text


def test_the_restaurant_comparison_follows_memory_and_time_per_token():
    infer = mode_row("infer", time_ms=4_611, peak=900_000_000, tokens=101)  # 45.7 ms per token
    train = mode_row("train", time_ms=2_489, peak=3_000_000_000, tokens=128)  # 19.4 ms per token
    text = train_vs_infer.compare_per_request(infer, train)
    assert text.startswith("Learning a recipe took 3.3x the memory of cooking one order, but less time per token")
    assert "(19.4 vs 45.7 ms" in text
    slow_training = mode_row("train", time_ms=20_000, peak=600_000_000, tokens=100)  # 200 ms per token
    text = train_vs_infer.compare_per_request(infer, slow_training)
    assert text == "Learning a recipe took less memory than cooking one order (67% of it), and 4.4x the time per token."


def published_llama_8b(details: dict) -> dict:
    return next(model for model in details["published_models"] if model["name"] == "Llama-3.1-8B")


def test_the_llama_crossover_is_the_one_derived_by_hand(tiny):
    infer = mode_row("infer", time_ms=1, peak=10, tokens=1)
    train = mode_row("train", time_ms=1, peak=20, tokens=1)
    llama = published_llama_8b(details_for(tiny, infer, train))
    # By hand: training 16 B x 8,030,261,248 parameters, served weights 2 B x the same; a bfloat16 KV cache holds
    # 2 x 32 layers x 8 KV heads x 128 x 2 B = 131,072 B per token, x 2,048 tokens = 268,435,456 B per user;
    # (16 - 2) x 8,030,261,248 / 268,435,456 = 418.8, so the 419th user tips serving over training.
    assert llama["kv_bytes_per_token"] == 131_072
    assert llama["kv_bytes_per_user"] == 268_435_456
    assert llama["users_to_exceed_training"] == 419
    assert llama["users_to_exceed_training_at_full_context"] == 7  # 131,072 tokens: 64x the cache per user


def roofline_row(dtype: str, *, bytes_per_token: float, tokens_per_s: float, bandwidth: float) -> dict:
    """A roofline row with the derived fields `run` computes."""
    step_ms, read_ms = 1000 / tokens_per_s, bytes_per_token / bandwidth * 1000
    return {
        "dtype": dtype,
        "bytes_per_token": bytes_per_token,
        "decode_tokens_per_s": tokens_per_s,
        "ceiling_tokens_per_s": bandwidth / bytes_per_token,
        "mbu": bytes_per_token * tokens_per_s / bandwidth,
        "step_ms": step_ms,
        "read_ms": read_ms,
        "overhead_ms": max(0.0, step_ms - read_ms),
    }


BANDWIDTH = 30e9


def test_a_low_mbu_names_the_overhead_and_does_not_credit_memory():
    # 540 MB per token at 30 GB/s: 18 ms of reading; at 13.9 tokens/s a step is 72 ms, so MBU = 0.25
    rows = [roofline_row("float32", bytes_per_token=540e6, tokens_per_s=13.9, bandwidth=BANDWIDTH)]
    text = roofline.finding(rows, {"bandwidth_bytes_per_s": BANDWIDTH})
    assert rows[0]["mbu"] == pytest.approx(0.25, abs=0.01)
    assert "memory set the pace" not in text
    assert "takes 18.0 ms of each 71.9 ms step; the other 53.9 ms is framework and kernel-launch overhead" in text


def test_a_high_mbu_may_say_memory_set_the_pace():
    rows = [roofline_row("float32", bytes_per_token=540e6, tokens_per_s=50.0, bandwidth=BANDWIDTH)]  # MBU 0.9
    text = roofline.finding(rows, {"bandwidth_bytes_per_s": BANDWIDTH})
    assert rows[0]["mbu"] == pytest.approx(0.9)
    assert text.endswith("reading the weights was most of each step: memory set the pace.")


@pytest.mark.parametrize(
    ("tokens_per_s", "verdict"),
    [
        (13.0, "fewer bytes did not make it faster, so its kernels, not memory, held it back here"),
        (16.0, "faster, but far less than the bytes saved, as the rest of each step did not shrink"),  # 1.15x
        (24.0, "nearly in proportion to the bytes saved"),  # 1.73x for 2x fewer bytes
        (31.0, "more than the bytes saved, so the rest of each step shrank too"),  # 2.23x, as measured here
    ],
)
def test_a_smaller_format_is_judged_by_its_speed_against_the_bytes_it_saved(tokens_per_s, verdict):
    base = roofline_row("float32", bytes_per_token=540e6, tokens_per_s=13.9, bandwidth=BANDWIDTH)
    half = roofline_row("bfloat16", bytes_per_token=270e6, tokens_per_s=tokens_per_s, bandwidth=BANDWIDTH)
    text = roofline.finding([base, half], {"bandwidth_bytes_per_s": BANDWIDTH})
    assert f"bfloat16 read 2.0x fewer bytes and ran {tokens_per_s / 13.9:.2f}x as fast: {verdict}." in text


@pytest.mark.parametrize(("tokens_per_s", "shrank"), [(12.0, False), (40.0, True)])
def test_a_path_reading_the_same_bytes_is_judged_by_the_rest_of_its_step(tokens_per_s, shrank):
    base = roofline_row("float32", bytes_per_token=540e6, tokens_per_s=13.9, bandwidth=BANDWIDTH)
    compiled = roofline_row("compiled", bytes_per_token=560e6, tokens_per_s=tokens_per_s, bandwidth=BANDWIDTH)
    text = roofline.finding([base, compiled], {"bandwidth_bytes_per_s": BANDWIDTH})
    said = f"compiled read no fewer bytes and ran {tokens_per_s / 13.9:.2f}x as fast"
    if shrank:  # 25 ms a step, 18.7 of them reading: 6.3 ms of overhead instead of 53.9
        assert f"{said}: the rest of each step shrank from 53.9 to 6.3 ms, which brought it to 75% of" in text
    else:
        assert text.endswith(f"{said}.")


def test_a_benchmark_slower_than_the_model_itself_is_no_peak():
    rows = [
        {"compute_dtype": "float32", "prefill_flops_per_s": 77e9},
        {"compute_dtype": "bfloat16", "prefill_flops_per_s": 19e9},
    ]
    peaks = {"float32": 136e9, "bfloat16": 0.87e9}  # AMD EPYC without native bfloat16, measured
    notes = roofline.raise_peaks_to_what_ran(rows, peaks)
    assert peaks == {"float32": 136e9, "bfloat16": 19e9}
    assert rows[0]["mfu"] == pytest.approx(77 / 136)
    assert rows[1]["mfu"] == 1.0
    assert list(notes) == ["bfloat16"]
    assert "ran at 0.9 GFLOP/s, slower than the model's own prefill (19.0 GFLOP/s)" in notes["bfloat16"]


def prefill_row(tokens: int, *, itl: float, p10: float, p90: float) -> dict:
    return {
        "prompt_tokens": tokens, "prefill_ms": tokens * 2.0, "prefill_min_ms": tokens * 1.9,
        "prefill_max_ms": tokens * 2.2, "prefill_tokens_per_s": 500.0, "prefill_ms_per_token": 2.0,
        "itl_ms": itl, "itl_p10_ms": p10, "itl_p90_ms": p90, "decode_tokens_per_s": 1000 / itl,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("short", "long", "verdict"),
    [
        # seen on screen: 150 ms after 16 tokens, 87 ms after 1,024, under a text saying the long one may be slower
        ((150, 95, 160), (87, 80, 92), "which a bigger KV cache cannot cause"),
        ((80, 75, 86), (83, 78, 90), "within this machine's noise"),
        ((80, 75, 84), (120, 110, 130), "slower after the long order"),
    ],
)
def test_decode_after_a_long_prompt_is_said_as_far_as_its_spread_allows(short, long, verdict):
    rows = [
        prefill_row(16, itl=short[0], p10=short[1], p90=short[2]),
        prefill_row(1024, itl=long[0], p10=long[1], p90=long[2]),
    ]
    sentence = prefill.finding(rows)
    assert verdict in sentence
    assert (
        f"{short[0]:,.1f} ms per token after the short order (most steps {short[1]:,.1f}–{short[2]:,.1f} ms)"
        in sentence
    )


def kv_rows(*, prefill_on: float, prefill_off: float, decode_on: list[float]) -> list[dict]:
    rows = [{"kv_cache": True, "step": 0, "latency_ms": prefill_on}]
    rows += [{"kv_cache": True, "step": i + 1, "latency_ms": ms} for i, ms in enumerate(decode_on)]
    rows += [{"kv_cache": False, "step": 0, "latency_ms": prefill_off}]
    rows += [{"kv_cache": False, "step": i + 1, "latency_ms": 100.0 + 10 * i} for i in range(len(decode_on))]
    return rows


def test_the_same_prefill_timed_alike_in_both_runs_is_said_alike():
    sentence = kv_cache.prefill_step(kv_rows(prefill_on=190, prefill_off=185, decode_on=[90, 92, 91, 95, 89] * 4))
    assert "190 ms with the cache and 185 ms without: alike" in sentence


def test_the_same_prefill_timed_far_apart_is_called_noise_not_a_lesson():
    """Seen: the chart showed the prefill step slower with the cache (290 vs 185 ms) without a word."""
    sentence = kv_cache.prefill_step(kv_rows(prefill_on=290, prefill_off=185, decode_on=[90, 92, 91, 95, 89] * 4))
    assert "290 ms with the cache and 185 ms without: 1.6x apart" in sentence
    assert "machine was busier" in sentence
