"""Decode paths: the same model run several ways, each still recorded token by token.

- `eager`: the transformers model as loaded, a growing (dynamic) KV cache, one Python call per layer part.
- `compiled`: engine.static_decoder over a cache allocated once, its decode step compiled by `torch.compile`, in
  float32, every one-token matrix product written as a multiply-and-sum that inductor spreads over all cores
  (engine.matvec): the same numbers as eager in another summing order.
- `compiled-int8`: the static decoder with every linear layer's weights stored as int8 (engine.quantize) and
  the activations in bfloat16 (torch's int8 kernel ran fastest with them).
- `compiled-bf16`: the `compiled` step with the weights stored as bfloat16 (half the bytes), float32 arithmetic.

Listed slowest first as measured on the 2-core CPU this was built on (README, "Fast decode paths"); `fastest`
takes the last one that can run here. Preparing a compiled path takes minutes the first time; inductor's caches
live under the data folder, one folder per torch version and device type (a torch upgrade starts a new one), so a
second process prepares in seconds. `prepare_path` reports how long preparing took and whether the cache was cold
or warm. Warm-up steps run inside preparation and are never recorded.
"""

from __future__ import annotations

import os
import shutil
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.errors import EngineError
from engine.facts import DECODE_PATHS, FASTEST_PATH
from engine.hardware import available_dtypes, dtype_name, synchronizer
from engine.loading import LoadedModel, cache_dir
from engine.matvec import with_row_sum_linears
from engine.quantize import int8_weight_only_support, quantize_int8_weight_only
from engine.static_decoder import StaticDecoder, unsupported_reason

PATH_NAMES, FASTEST = DECODE_PATHS, FASTEST_PATH
DEFAULT_MAX_LEN = 512  # positions a compiled path's static cache holds (prompt and answer together)
WARMUP_STEPS = 2  # decode steps run while preparing (they compile the step; never recorded)

# What torch.compile is asked for, per device type and path. On CPU, inductor's defaults for every path. The int8
# path had frozen weights and max_autotune (inductor's C++ matrix-vector templates timed faster for its output
# head): 27-36 tokens/s against 24-31 without, within this VM's spread, but inductor does not cache a graph with
# frozen weights, so every new process compiled it again (a "warm" prepare of 44-57 s, against 24 s without:
# the 30 s target). `cpp_wrapper` was measured and left off: 24.5 vs 23.7 tokens/s, 413 s instead of 98 s cold.
# The row-sum paths need neither (no matrix product is left in their step), and freezing would fold the bfloat16
# weights' conversion into float32 copies (measured: the bfloat16 path then ran at float32's speed).
# On CUDA, CUDA graphs remove the per-kernel launch cost a small model's step is made of (not run here: no GPU).
COMPILE_OPTIONS: dict[str, dict[str, dict]] = {
    "cpu": {},
    "cuda": {"compiled-int8": {"triton.cudagraphs": True, "freezing": True}, "*": {"triton.cudagraphs": True}},
}
WEIGHT_DTYPES = {"compiled-bf16": torch.bfloat16}  # row-sum paths storing weights smaller than their arithmetic


def compile_options(name: str, device: torch.device) -> dict:
    """The inductor options a path is compiled with on this device."""
    by_path = COMPILE_OPTIONS[device.type]
    return dict(by_path.get(name, by_path.get("*", {})))


class PathUnavailable(EngineError):
    """A decode path that cannot run here; the message says why in one sentence."""


@dataclass(frozen=True, kw_only=True)
class PathDescription:
    """What a path is, in a sentence and in the restaurant's words."""

    name: str
    summary: str
    kitchen: str  # the restaurant's words for it


DESCRIPTIONS = {
    "eager": PathDescription(
        name="eager",
        summary="the model as loaded, a growing KV cache, every layer part called from Python",
        kitchen="a cook who fetches each pan and knife as the recipe names it",
    ),
    "compiled-int8": PathDescription(
        name="compiled-int8",
        summary="a static KV cache, a compiled step, weights stored as int8 (a quarter of float32's bytes)",
        kitchen="a prepared station with much smaller ingredients, some of them cut too coarsely (quantization)",
    ),
    "compiled": PathDescription(
        name="compiled",
        summary="a static KV cache and a decode step compiled once by torch.compile, spread over every core",
        kitchen="preparing the station once: every pan in reach before the first order, both cooks busy (compiling)",
    ),
    "compiled-bf16": PathDescription(
        name="compiled-bf16",
        summary="compiled, with weights stored as bfloat16 (half of float32's bytes), float32 arithmetic",
        kitchen="the prepared station with ingredients packed smaller, cooked the same way (quantization, gently)",
    ),
}


def compute_dtype(name: str, loaded: LoadedModel) -> torch.dtype:
    """The dtype a path's activations (and unquantized weights) use."""
    if name == "compiled-int8" and loaded.device.type in ("cpu", "cuda"):
        return torch.bfloat16  # torch's int8 kernel with float32 activations ran 7 tokens/s here, bfloat16 24
    return loaded.dtype


def compile_cache_folder(device: torch.device) -> Path:
    """Where inductor keeps its compiled code for this torch version and device type."""
    return cache_dir() / "compiled" / f"torch-{torch.__version__}-{device.type}"


def path_unavailable(loaded: LoadedModel, name: str) -> str | None:
    """None when the path can run with this model on this device; otherwise one sentence why not."""
    if name not in PATH_NAMES:
        return f"there is no decode path called {name!r} (the paths: {', '.join(PATH_NAMES)}, or {FASTEST})"
    if name == "eager":
        return None
    if loaded.device.type not in COMPILE_OPTIONS:
        return f"torch.compile's generated code is not used on {loaded.device.type} here (CPU and CUDA only)"
    reason = unsupported_reason(loaded.model)
    if reason:
        return reason
    if loaded.device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        return "compiling needs a C++ compiler and this machine has none (install g++)"
    if name == "compiled-int8":
        return int8_weight_only_support(loaded.device)
    if name in WEIGHT_DTYPES:
        smaller = dtype_name(WEIGHT_DTYPES[name])
        if smaller not in available_dtypes(loaded.device):
            return f"{loaded.device.type} here has no {smaller} support"
        if loaded.dtype.itemsize <= WEIGHT_DTYPES[name].itemsize:
            return f"the model is loaded as {dtype_name(loaded.dtype)}: the compiled path already reads that few bytes"
    return None


def available_paths(loaded: LoadedModel) -> dict[str, str | None]:
    """Every path with None (it can run here) or why it cannot."""
    return {name: path_unavailable(loaded, name) for name in PATH_NAMES}


@dataclass(eq=False, kw_only=True)
class PreparedPath:
    """A path ready to decode: its model, static cache and compiled step (None for eager), and how it was made."""

    name: str
    loaded: LoadedModel
    decoder: StaticDecoder | None = None
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # (token (1, 1), position (1,))
    prepare_s: float = 0.0
    cache: str = "none"  # "cold" (compiled from scratch), "warm" (inductor's cache on disk), "none" (eager)
    options: dict = field(default_factory=dict)

    @property
    def model(self) -> torch.nn.Module:
        """The module whose weights this path reads (a quantized copy for int8)."""
        return self.decoder.model if self.decoder is not None else self.loaded.model

    @property
    def weights(self) -> str:
        """How the path stores its weights: "int8", "bfloat16", or "as loaded"."""
        if self.name == "compiled-int8":
            return "int8"
        return dtype_name(WEIGHT_DTYPES[self.name]) if self.name in WEIGHT_DTYPES else "as loaded"

    @property
    def max_len(self) -> int | None:
        """Positions the static cache holds (None: eager's cache grows as needed)."""
        return self.decoder.max_len if self.decoder is not None else None

    def describe(self) -> dict:
        """The path as a trace records it."""
        return {
            "name": self.name,
            "dtype": dtype_name(self.decoder.dtype) if self.decoder is not None else dtype_name(self.loaded.dtype),
            "weights": self.weights,
            "prepare_s": round(self.prepare_s, 3),
            "cache": self.cache,
            "max_len": self.max_len,
            "options": dict(self.options),
        }

    def generate_step(
        self, prompt_ids: torch.Tensor, *, sampler: Callable[[torch.Tensor], torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, StaticDecoder]]:
        """Yield (token (1, 1), logits (1, vocab), cache) per new token: prefill uncompiled, decode compiled."""
        decoder, step = self.decoder, self.step
        length = prompt_ids.shape[1]
        decoder.reset()
        with torch.inference_mode():
            logits = decoder.forward(prompt_ids, torch.arange(length, device=decoder.device))  # (1, vocab)
            decoder.filled = length
            while True:
                token = sampler(logits)  # (1, 1)
                yield token, logits, decoder
                if decoder.filled >= decoder.max_len:
                    raise EngineError(f"the {self.name} path's cache holds {decoder.max_len} positions and is full")
                position = torch.tensor([decoder.filled], device=decoder.device)  # (1,)
                logits = step(token, position)  # (1, vocab)
                decoder.filled += 1


_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(name, max_len): PreparedPath}


def prepared(loaded: LoadedModel, name: str, *, max_len: int = DEFAULT_MAX_LEN) -> PreparedPath | None:
    """The path already prepared in this process for this model, or None."""
    return _prepared.get(loaded.model, {}).get((name, max_len))


def prepare_path(
    loaded: LoadedModel,
    name: str,
    *,
    max_len: int = DEFAULT_MAX_LEN,
    on_progress: Callable[[str], None] | None = None,
) -> PreparedPath:
    """Make a path ready (compiling its step when needed, once per process); PathUnavailable says why it cannot."""
    if name == FASTEST:
        name = fastest_available(loaded)
    reason = path_unavailable(loaded, name)
    if reason:
        raise PathUnavailable(f"the {name} path is unavailable: {reason}")
    if name == "eager":
        return PreparedPath(name="eager", loaded=loaded)
    known = prepared(loaded, name, max_len=max_len)
    if known is not None:
        return known
    report = on_progress or (lambda message: None)
    folder = compile_cache_folder(loaded.device)
    try:
        path = compile_path(loaded, name, max_len=max_len, folder=folder, report=report)
    except PathUnavailable:
        raise
    except Exception as err:  # noqa: BLE001 - a stale or half-written cache: rebuild it once from scratch
        report(f"Compiling failed ({first_line(err)}); clearing the compile cache and trying once more")
        shutil.rmtree(folder, ignore_errors=True)
        torch._dynamo.reset()
        try:
            path = compile_path(loaded, name, max_len=max_len, folder=folder, report=report)
        except Exception as again:
            raise PathUnavailable(f"the {name} path is unavailable: compiling failed ({first_line(again)})") from again
    _prepared.setdefault(loaded.model, {})[(name, max_len)] = path
    return path


def compile_path(
    loaded: LoadedModel, name: str, *, max_len: int, folder: Path, report: Callable[[str], None]
) -> PreparedPath:
    """Build the path's model and static decoder, compile its decode step and run the warm-up steps."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)  # read by inductor whenever it looks for its cache
    dtype = compute_dtype(name, loaded)
    positions = min(max_len, loaded.facts.context_length)
    if name == "compiled-int8":
        report("Storing the weights as int8")
        model = quantize_int8_weight_only(loaded.model).to(dtype)  # a copy; .to() casts the float tensors only
    else:
        weight_dtype = WEIGHT_DTYPES.get(name, loaded.dtype)
        report(f"Rewriting the linear layers as row sums over {dtype_name(weight_dtype)} weights")
        model = with_row_sum_linears(loaded.model, weight_dtype=weight_dtype)  # a copy
    decoder = StaticDecoder(model, max_len=positions, own_copy=False)
    options = compile_options(name, loaded.device)
    step = torch.compile(decoder.forward, fullgraph=True, dynamic=False, options=dict(options))
    report(f"Compiling the {name} decode step (minutes the first time, less once inductor's cache holds it)")
    sync = synchronizer(loaded.device)
    misses_before = compile_cache_misses()
    with torch.inference_mode():
        token = torch.zeros((1, 1), dtype=torch.long, device=loaded.device)  # (1, 1)
        for position in range(WARMUP_STEPS):
            step(token, torch.tensor([position], device=loaded.device))
        sync()
    decoder.reset()
    warm = compile_cache_misses() == misses_before  # every compiled graph came from the disk cache
    return PreparedPath(
        name=name,
        loaded=loaded,
        decoder=decoder,
        step=without_guard_checks(step),
        prepare_s=time.perf_counter() - started,
        cache="warm" if warm else "cold",
        options={
            "torch_compile": options,
            "static_cache_positions": positions,
            "compute_dtype": dtype_name(dtype),
            "guard_checks": "skipped after warm-up",
        },
    )


def without_guard_checks(step: Callable) -> Callable:
    """The compiled step, called without re-checking dynamo's guards (~300 tensors' checks, 1-3 ms a step here).

    Safe for this step only: it is compiled once, during warm-up, for the one set of shapes, dtypes and devices
    it is ever called with (a (1, 1) token and a (1,) position), over a model nobody else changes. torch
    still tells compiled graphs apart; it skips re-proving what cannot change (torch.compiler.set_stance).
    """

    def step_without_checks(token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            return step(token, position)

    return step_without_checks


def compile_cache_misses() -> int:
    """Graphs inductor has compiled from scratch in this process (its FX graph cache's misses)."""
    from torch._dynamo.utils import counters

    return counters["inductor"]["fxgraph_cache_miss"]


def fastest_available(loaded: LoadedModel) -> str:
    """The path expected to be fastest here: the last of PATH_NAMES that can run (they are listed slowest first)."""
    usable = [name for name, reason in available_paths(loaded).items() if reason is None]
    return usable[-1]


def first_line(err: BaseException) -> str:
    """An exception's first line, short enough for a sentence."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]
