"""The quality cost of a decode path: llama-perplexity's statistics, checked by hand and on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_tiny_model

from engine.quality import quality_cost, teacher_forced_logits


def logits_of(probabilities: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probabilities).log()  # log-probabilities are logits (softmax gives them back)


def test_the_statistics_match_a_hand_computation():
    # position 0: reference (0.5, 0.5), path (0.9, 0.1), the text's next token is 1;
    # position 1: both (0.8, 0.2), next token 0; the last position predicts past the text and is not compared
    reference = logits_of([[0.5, 0.5], [0.8, 0.2], [0.3, 0.7]])
    path = logits_of([[0.9, 0.1], [0.8, 0.2], [0.9, 0.1]])
    cost = quality_cost(reference, path, [0, 1, 0])
    kl_first = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.5108 nats
    assert cost.positions == 2
    assert cost.token_agreement == 1.0  # a tie goes to the first token in both: the same top token at both positions
    assert cost.kl_divergence == pytest.approx(kl_first / 2, abs=1e-6)
    assert cost.kl_divergence_median == pytest.approx(kl_first / 2, abs=1e-6)
    assert cost.kl_divergence_p99 == pytest.approx(0.99 * kl_first, abs=1e-6)
    assert cost.kl_divergence_max == pytest.approx(kl_first, abs=1e-6)
    assert cost.rms_delta_p == pytest.approx(math.sqrt((0.4**2 + 0) / 2), abs=1e-6)


def test_a_flipped_top_token_counts_against_agreement():
    reference = logits_of([[0.6, 0.4], [0.6, 0.4], [0.5, 0.5]])
    path = logits_of([[0.4, 0.6], [0.6, 0.4], [0.5, 0.5]])
    assert quality_cost(reference, path, [0, 0, 0]).token_agreement == 0.5


def test_a_model_against_itself_costs_nothing_and_a_coarser_copy_costs_a_little():
    tiny = make_tiny_model(context=512)
    text = list(range(40, 140))  # 100 byte tokens
    reference = teacher_forced_logits(tiny.model, text, device=tiny.device)
    same = quality_cost(reference, teacher_forced_logits(tiny.model, text, device=tiny.device), text)
    assert same.token_agreement == 1.0 and same.kl_divergence_max < 1e-6 and same.rms_delta_p < 1e-6
    coarse = make_tiny_model(context=512)
    coarse.model.to(torch.bfloat16)  # 8 bits of mantissa instead of 23
    moved = quality_cost(reference, teacher_forced_logits(coarse.model, text, device=coarse.device), text)
    assert moved.positions == 99
    assert 0 < moved.kl_divergence < 0.1  # moved, but the distributions stay close
    assert 0 < moved.rms_delta_p < 0.05
    assert moved.kl_divergence_median <= moved.kl_divergence_p99 <= moved.kl_divergence_max


def test_logits_that_do_not_cover_the_text_are_refused():
    with pytest.raises(ValueError, match="do not both cover"):
        quality_cost(torch.zeros(3, 5), torch.zeros(4, 5), [1, 2, 3])
    with pytest.raises(ValueError, match="at least two tokens"):
        quality_cost(torch.zeros(1, 5), torch.zeros(1, 5), [1])


@pytest.mark.slow
def test_on_the_real_model_int8_weights_cost_more_than_bfloat16_and_both_stay_close(real):
    import copy
    from pathlib import Path

    from engine.quantize import quantize_int8_weight_only

    explained = sorted((Path(__file__).resolve().parent.parent / "assets" / "explain").glob("*.md"))
    text = " ".join(path.read_text(encoding="utf-8") for path in explained)
    ids = real.tokenizer(text, add_special_tokens=False)["input_ids"][:257]  # 256 predictions compared
    reference = teacher_forced_logits(real.model, ids, device=real.device)
    int8 = quality_cost(
        reference, teacher_forced_logits(quantize_int8_weight_only(real.model), ids, device=real.device), ids
    )
    bfloat16_model = copy.deepcopy(real.model).to(torch.bfloat16)
    bfloat16 = quality_cost(reference, teacher_forced_logits(bfloat16_model, ids, device=real.device), ids)
    # measured here (deterministic: the same text, the same kernels): int8 agreement 0.945, mean KL 0.0063 nats,
    # RMS delta p 0.015; bfloat16 0.969, 0.0015, 0.0065. Per-channel int8 weights round harder than bfloat16's.
    assert int8.positions == bfloat16.positions == 256
    assert int8.kl_divergence > bfloat16.kl_divergence > 0
    assert int8.rms_delta_p > bfloat16.rms_delta_p > 0
    for cost in (int8, bfloat16):
        assert 0.9 <= cost.token_agreement < 1.0
        assert cost.kl_divergence < 0.02 and cost.kl_divergence_max < 0.2
