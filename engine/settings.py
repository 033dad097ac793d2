"""Generation options: one typed, frozen dataclass with a comment per knob, and its validation."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from engine.errors import SettingsError

# Requests the kitchen cooks together by default: the batching experiment measured ~9x batch 1's tokens/s at 16 here.
DEFAULT_MAX_BATCH = 16

# The most new tokens one request may ask for. Hosts of a shared dashboard can lower (or raise) it
# with the environment variable INFERENCE_KITCHEN_MAX_NEW_TOKENS_CAP.
DEFAULT_MAX_NEW_TOKENS_CAP = 2048


def max_new_tokens_cap() -> int:
    """The configured upper bound for max_new_tokens."""
    raw = os.environ.get("INFERENCE_KITCHEN_MAX_NEW_TOKENS_CAP", "")
    try:
        return int(raw) if raw.strip() else DEFAULT_MAX_NEW_TOKENS_CAP
    except ValueError as err:
        raise SettingsError(f"INFERENCE_KITCHEN_MAX_NEW_TOKENS_CAP must be a whole number, not {raw!r}") from err


@dataclass(frozen=True, kw_only=True)
class GenerationSettings:
    """Everything that decides what one request generates (recorded whole in every trace)."""

    max_new_tokens: int = 64  # stop after this many new tokens (an end-of-sequence token may stop sooner)
    temperature: float = 0.0  # 0 = greedy: always the most likely token; higher = more random
    top_k: int = 0  # sample only among the k most likely tokens (0 = no limit)
    top_p: float = 1.0  # sample only among the most likely tokens whose probabilities add up to p (1 = no limit)
    seed: int = 0  # with sampling, the same seed gives the same tokens
    kv_cache: bool = True  # False = recompute the whole sequence at every step (slower, same greedy output)
    chat_template: bool = True  # wrap the prompt in the model's chat template; False = raw completion
    stop_at_eos: bool = True  # False = always produce max_new_tokens (benchmarks want equal lengths)

    def to_dict(self) -> dict:
        """The settings as a plain JSON-ready dict."""
        return asdict(self)


def check_settings(settings: GenerationSettings, *, cap: int | None = None) -> None:
    """Raise SettingsError naming the first option that is out of range."""
    cap = max_new_tokens_cap() if cap is None else cap
    if not isinstance(settings.max_new_tokens, int) or settings.max_new_tokens <= 0:
        raise SettingsError(f"max_new_tokens must be a whole number above 0, not {settings.max_new_tokens!r}")
    if settings.max_new_tokens > cap:
        raise SettingsError(
            f"max_new_tokens={settings.max_new_tokens} is above this installation's cap of {cap} "
            "(set INFERENCE_KITCHEN_MAX_NEW_TOKENS_CAP to change it)"
        )
    if not settings.temperature >= 0 or settings.temperature > 100:
        raise SettingsError(f"temperature must be between 0 (greedy) and 100, not {settings.temperature!r}")
    if not isinstance(settings.top_k, int) or settings.top_k < 0:
        raise SettingsError(f"top_k must be 0 (no limit) or a positive whole number, not {settings.top_k!r}")
    if not 0 < settings.top_p <= 1:
        raise SettingsError(f"top_p must be above 0 and at most 1, not {settings.top_p!r}")
    if not isinstance(settings.seed, int) or settings.seed < 0:
        raise SettingsError(f"seed must be a whole number of 0 or more, not {settings.seed!r}")
