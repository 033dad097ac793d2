"""llama.cpp on the same GGUF file and the same cores: what a dedicated runtime does with our model, measured alike.

Only when llama-cpp-python happens to be installed (never a dependency: it builds from source, minutes) and the
model is the bundled default, whose GGUF file our float32 copy was dequantized from, so both read the same
weights. Timed with our clock around each `eval` of one token plus its greedy pick (as our paths time one
forward pass plus sampling); its quality is read teacher-forced from its logits over the same text.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.facts import DEFAULT_MODEL, kv_bytes_per_token
from engine.loading import LoadedModel, default_model_gguf

NAME = "llama.cpp"


def llama_cpp_unavailable(loaded: LoadedModel) -> str | None:
    """None when llama.cpp can run this model here; otherwise one sentence why not."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (never a dependency: `pip install llama-cpp-python` builds it)"
    if loaded.facts.name != DEFAULT_MODEL or not loaded.facts.source.startswith("bundled GGUF"):
        return "only the bundled default model comes with a GGUF file for llama.cpp here"
    if loaded.device.type != "cpu":
        return "this comparison runs llama.cpp on the CPU only"
    return None


@dataclass(frozen=True, kw_only=True)
class LlamaCppRun:
    """One llama.cpp measurement: speed of a greedy answer, its tokens, and its logits over the quality text."""

    load_s: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    itl_ms: float  # median decode step
    answer: list[int]
    text_logits: torch.Tensor  # (T, V)
    weight_bytes: int
    weights: str  # the GGUF's tensor types, most bytes first


def gguf_weights(path: Path) -> tuple[int, str]:
    """(bytes of every tensor in the file, its tensor types by bytes): what one step reads, the tied head included."""
    import gguf

    sizes: Counter = Counter()
    for tensor in gguf.GGUFReader(str(path)).tensors:
        sizes[tensor.tensor_type.name] += int(tensor.n_bytes)
    return sum(sizes.values()), ", ".join(name for name, _ in sizes.most_common())


def measure_llama_cpp(prompt_ids: list[int], text_ids: list[int], *, new_tokens: int, threads: int) -> LlamaCppRun:
    """Load the bundled GGUF in llama.cpp, decode a greedy answer step by step, and read its logits over a text."""
    import numpy as np
    from llama_cpp import Llama

    gguf_path = default_model_gguf()
    began = time.perf_counter()
    llm = Llama(
        model_path=str(gguf_path),
        n_ctx=max(len(prompt_ids) + new_tokens, len(text_ids)) + 8,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,  # every position's logits: the quality check reads them all
        verbose=False,
    )
    load_s = time.perf_counter() - began

    def answer(count: int) -> tuple[float, list[float], list[int]]:
        llm.reset()
        began = time.perf_counter()
        llm.eval(prompt_ids)
        tokens = [int(np.argmax(llm.scores[llm.n_tokens - 1]))]
        prefill_s, steps = time.perf_counter() - began, []
        while len(tokens) < count:
            began = time.perf_counter()
            llm.eval([tokens[-1]])
            tokens.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            steps.append(time.perf_counter() - began)
        return prefill_s, steps, tokens

    answer(4)  # warm-up, not measured
    prefill_s, steps, tokens = answer(new_tokens)
    llm.reset()
    llm.eval(text_ids)
    logits = torch.from_numpy(np.array(llm.scores[: len(text_ids)], dtype=np.float32))  # (T, V)
    weight_bytes, weights = gguf_weights(gguf_path)
    return LlamaCppRun(
        load_s=load_s,
        prefill_tokens_per_s=len(prompt_ids) / prefill_s,
        decode_tokens_per_s=len(steps) / sum(steps),
        itl_ms=statistics.median(steps) * 1000,
        answer=tokens,
        text_logits=logits,
        weight_bytes=weight_bytes,
        weights=weights,
    )


def llama_cpp_kv_bytes(loaded: LoadedModel, *, context: int) -> int:
    """KV bytes a llama.cpp step reads at `context` positions: its cache holds float16 keys and values."""
    facts = loaded.facts
    return context * kv_bytes_per_token(
        layers=facts.layers, kv_heads=facts.kv_heads, head_dim=facts.head_dim, element_bytes=2
    )
