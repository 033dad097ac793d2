"""What a faster decode path costs in quality: its next-token distributions against a reference's, over one text.

Teacher-forced: both models read the same tokens (the reference's text), and at every position their predictions
for the next token are compared, so one early difference cannot cascade into a different text. The figures are
the ones llama.cpp's `llama-perplexity --kl-divergence` reports for a quantization (tools/perplexity/README.md):
- "same top p": the share of positions where both models' most likely next token is the same;
- KL divergence of the path from the reference, sum_v p_ref(v) * (log p_ref(v) - log p_path(v)), in nats, per
  position (mean, median, 99th percentile, maximum);
- RMS Δp: the root mean square, over positions, of the change in probability of the text's actual next token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, kw_only=True)
class QualityCost:
    """How far a path's next-token predictions move from the reference's over the same text."""

    positions: int  # next-token predictions compared
    token_agreement: float  # "same top p": share of positions with the same most likely token (0..1)
    kl_divergence: float  # mean KL(reference || path), nats
    kl_divergence_median: float
    kl_divergence_p99: float
    kl_divergence_max: float
    rms_delta_p: float  # RMS change in the probability of the text's actual next token (0..1)

    def to_dict(self) -> dict:
        """The figures as a flat dict (result rows carry them)."""
        return dict(self.__dict__)


@torch.inference_mode()
def teacher_forced_logits(model: torch.nn.Module, token_ids: list[int], *, device: torch.device) -> torch.Tensor:
    """The model's next-token logits at every position of a text it reads whole (one forward pass), in float32."""
    ids = torch.tensor([token_ids], device=device)  # (1, T)
    logits = model(input_ids=ids, use_cache=False).logits  # (1, T, V)
    return logits[0].float()  # (T, V)


def quality_cost(reference_logits: torch.Tensor, path_logits: torch.Tensor, token_ids: list[int]) -> QualityCost:
    """Compare two models' teacher-forced logits over one text (position t predicts token t + 1)."""
    if reference_logits.shape != path_logits.shape or reference_logits.shape[0] != len(token_ids):
        raise ValueError(
            f"logits of shapes {tuple(reference_logits.shape)} and {tuple(path_logits.shape)} do not both cover "
            f"the text's {len(token_ids)} tokens"
        )
    if len(token_ids) < 2:
        raise ValueError("a text of at least two tokens is needed to compare one next-token prediction")
    reference = torch.log_softmax(reference_logits[:-1].float(), dim=-1)  # (T-1, V)
    path = torch.log_softmax(path_logits[:-1].float(), dim=-1)  # (T-1, V)
    following = torch.tensor(token_ids[1:], device=reference.device)  # (T-1,)
    kl = (reference.exp() * (reference - path)).sum(dim=-1).clamp_min(0.0)  # (T-1,) rounding can dip below 0
    same_top = (reference.argmax(dim=-1) == path.argmax(dim=-1)).float()  # (T-1,)
    p_reference = reference.gather(1, following[:, None]).exp()[:, 0]  # (T-1,)
    p_path = path.gather(1, following[:, None]).exp()[:, 0]  # (T-1,)
    return QualityCost(
        positions=len(token_ids) - 1,
        token_agreement=same_top.mean().item(),
        kl_divergence=kl.mean().item(),
        kl_divergence_median=torch.quantile(kl, 0.5).item(),  # the middle two averaged (torch.median takes the lower)
        kl_divergence_p99=torch.quantile(kl, 0.99).item(),
        kl_divergence_max=kl.max().item(),
        rms_delta_p=math.sqrt(((p_path - p_reference) ** 2).mean().item()),
    )
