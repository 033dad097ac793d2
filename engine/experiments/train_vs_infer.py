"""Training vs inference: one real training step against one real request on the same model.

Training keeps weights, gradients, AdamW's two moments and the activations of a whole sequence for the
backward pass; inference keeps weights and the KV cache. The step trains the loaded model in place and puts
its weights back from a copy on disk afterwards, so the measurement sees no second copy in memory.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.experiments.base import Measured, Options, Progress, require_positive
from engine.experiments.common import PeakMemory, prompt_ids, release_free_memory
from engine.facts import kv_bytes_per_token
from engine.generate import prepare_request, stream_generate
from engine.hardware import timed_ms
from engine.loading import LoadedModel
from engine.settings import GenerationSettings
from engine.units import fmt_bytes, fmt_ms

MODEL_CONFIGS = Path(__file__).resolve().parents[2] / "assets" / "model_configs.json"
TRAINING_BYTES_PER_PARAMETER = 16  # AdamW: weights 4 + gradients 4 + two moments 8 (fp32; mixed precision is also 16)
SERVING_BYTES_PER_PARAMETER = 2  # bfloat16 weights, as models are usually served


@dataclass(frozen=True, kw_only=True)
class TrainVsInferOptions(Options):
    """The training batch, the request, and the context each concurrent user holds in the projection."""

    train_tokens: int = field(default=128, metadata={"help": "tokens in the training batch (batch 1)"})
    prompt: str = field(default="What is the capital of France?", metadata={"help": "the inference request's prompt"})
    new_tokens: int = field(default=64, metadata={"help": "tokens the inference request generates"})
    context_tokens: int = field(
        default=2048, metadata={"help": "context each concurrent user holds, for the projection"}
    )
    learning_rate: float = field(
        default=1e-5, metadata={"help": "AdamW's learning rate (the weights are put back afterwards)"}
    )

    def check(self) -> None:
        require_positive(train_tokens=self.train_tokens, new_tokens=self.new_tokens, context_tokens=self.context_tokens)


def tensor_bytes(tensors) -> int:
    """Total bytes of the given tensors (None entries skipped)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def unique_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The model's parameters, tied ones once."""
    return list({id(p): p for p in model.parameters()}.values())


def measure_inference(loaded: LoadedModel, options: TrainVsInferOptions) -> dict:
    """One request with the KV cache: its time, peak memory and where that memory went."""
    request = prepare_request(
        loaded, options.prompt, settings=GenerationSettings(max_new_tokens=options.new_tokens, stop_at_eos=False)
    )
    warm_up = prepare_request(loaded, options.prompt, settings=GenerationSettings(max_new_tokens=2, stop_at_eos=False))
    list(stream_generate(loaded, warm_up))  # weights read from a mapped file become resident now, not inside the peak
    release_free_memory(loaded.device)
    with PeakMemory(loaded.device) as memory:
        records = list(stream_generate(loaded, request))
    kv_bytes = records[-1].kv_cache_bytes
    weights = loaded.facts.weight_bytes
    return {
        "mode": "infer",
        "time_ms": records[-1].t_ms,
        "peak_memory_bytes": memory.peak_bytes,
        "tokens": len(request.token_ids) + len(records),
        "weights_bytes": weights,
        "gradients_bytes": 0,
        "optimizer_bytes": 0,
        "kv_cache_bytes": kv_bytes,
        "activations_bytes": max(0, memory.peak_bytes - memory.before_bytes - kv_bytes),
        "other_bytes": max(0, memory.before_bytes - weights),
        "memory_method": memory.method,
    }


def training_step(model: torch.nn.Module, ids: torch.Tensor, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Forward + backward + AdamW on one batch (1, T); returns (gradient bytes, optimizer-state bytes)."""
    loss = model(input_ids=ids, labels=ids).loss  # next-token cross-entropy over the batch
    loss.backward()
    gradients = tensor_bytes(p.grad for p in unique_parameters(model))
    optimizer.step()
    state = tensor_bytes(
        value for per_param in optimizer.state.values() for value in per_param.values() if torch.is_tensor(value)
    )
    optimizer.zero_grad(set_to_none=True)
    return gradients, state


def measure_training(loaded: LoadedModel, options: TrainVsInferOptions, progress: Progress) -> dict:
    """Two training steps on the loaded model (the second timed; the peak over both), weights restored after."""
    model, device = loaded.model, loaded.device
    ids = prompt_ids(loaded, min(options.train_tokens, loaded.facts.context_length))  # (1, T)
    parameters = unique_parameters(model)
    with tempfile.TemporaryDirectory(prefix="inference-kitchen-") as folder:
        saved = Path(folder) / "weights.pt"
        torch.save([p.detach() for p in parameters], saved)  # on disk, not a second copy in memory
        try:
            release_free_memory(device)
            with PeakMemory(device) as memory, torch.enable_grad():
                model.train()
                for p in parameters:
                    p.requires_grad_(True)
                optimizer = torch.optim.AdamW(parameters, lr=options.learning_rate)
                training_step(model, ids, optimizer)  # the first step also creates AdamW's state
                progress(0.6, "Training: the timed step (forward + backward + AdamW)")
                time_ms, (gradients, state) = timed_ms(device, functools.partial(training_step, model, ids, optimizer))
            del optimizer
        finally:
            model.eval()
            with torch.no_grad():
                originals = torch.load(saved, mmap=True, weights_only=True, map_location="cpu")
                for p, original in zip(parameters, originals, strict=True):
                    p.copy_(original)
                    p.grad = None
            release_free_memory(device)
    weights = loaded.facts.weight_bytes
    return {
        "mode": "train",
        "time_ms": time_ms,
        "peak_memory_bytes": memory.peak_bytes,
        "tokens": ids.shape[1],
        "weights_bytes": weights,
        "gradients_bytes": gradients,
        "optimizer_bytes": state,
        "kv_cache_bytes": 0,
        "activations_bytes": max(0, memory.peak_bytes - memory.before_bytes - gradients - state),
        "other_bytes": max(0, memory.before_bytes - weights),
        "memory_method": memory.method,
    }


def run(loaded: LoadedModel, options: TrainVsInferOptions, progress: Progress) -> Measured:
    """Measure one request and one training step, then project serving memory against training memory."""
    progress(0.05, "Serving one request")
    infer = measure_inference(loaded, options)
    progress(0.3, "Training: a warm-up step (it also creates the optimizer's state)")
    train = measure_training(loaded, options, progress)
    progress(1.0, "Done")
    details = projection(loaded, infer, train, context_tokens=options.context_tokens)
    details["verdict"] = verdict(infer, train, details, parameters=loaded.facts.parameters)
    return Measured(rows=[infer, train], details=details, finding=finding(infer, train, details))


def published_models() -> list[dict]:
    """The cited architectures from assets/model_configs.json."""
    return json.loads(MODEL_CONFIGS.read_text(encoding="utf-8"))["models"]


def users_to_exceed(extra_bytes: float, per_user_bytes: float) -> int:
    """The smallest number of users whose KV caches weigh more than `extra_bytes`."""
    return max(1, math.floor(extra_bytes / per_user_bytes) + 1)


def projection(loaded: LoadedModel, infer: dict, train: dict, *, context_tokens: int) -> dict:
    """At how many users x context serving memory passes training memory: measured here, by formula for others."""
    facts = loaded.facts
    per_user = facts.kv_bytes_per_token * context_tokens
    serving_base = infer["peak_memory_bytes"] - infer["kv_cache_bytes"]  # weights, runtime and activations, measured
    here = {
        "name": facts.name,
        "kv_bytes_per_user": per_user,
        "serving_base_bytes": serving_base,
        "training_bytes": train["peak_memory_bytes"],
        "users_to_exceed_training": users_to_exceed(train["peak_memory_bytes"] - serving_base, per_user),
        "basis": "measured: this machine's training-step peak vs one request's peak plus N x context x KV bytes per "
        "token",
    }
    others = []
    for config in published_models():
        kv_per_token = kv_bytes_per_token(  # a bfloat16 cache
            layers=config["layers"], kv_heads=config["kv_heads"], head_dim=config["head_dim"], element_bytes=2
        )
        training = TRAINING_BYTES_PER_PARAMETER * config["parameters"]
        serving = SERVING_BYTES_PER_PARAMETER * config["parameters"]
        others.append(
            {
                "name": config["name"],
                "parameters": config["parameters"],
                "kv_bytes_per_token": kv_per_token,
                "kv_bytes_per_user": kv_per_token * context_tokens,
                "training_bytes": training,
                "serving_weights_bytes": serving,
                "users_to_exceed_training": users_to_exceed(training - serving, kv_per_token * context_tokens),
                "context_length": config["context_length"],
                "users_to_exceed_training_at_full_context": users_to_exceed(
                    training - serving, kv_per_token * config["context_length"]
                ),
                "source": config["source"],
            }
        )
    return {
        "context_tokens": context_tokens,
        "this_model": here,
        "published_models": others,
        "formula": (
            f"serving memory = weights + N x {context_tokens:,} tokens x KV bytes per token; training memory >= "
            f"{TRAINING_BYTES_PER_PARAMETER} B per parameter (weights, gradients, AdamW moments; activations "
            "excluded), "
            f"served weights {SERVING_BYTES_PER_PARAMETER} B per parameter (bfloat16)"
        ),
    }


def finding(infer: dict, train: dict, details: dict) -> str:
    """The verdict on 'inference requires more memory than training', with the numbers behind it."""
    here, others = details["this_model"], details["published_models"]
    ratio = train["peak_memory_bytes"] / infer["peak_memory_bytes"]
    per_request = (
        "Per request the claim is false here: a training step peaked at "
        f"{fmt_bytes(train['peak_memory_bytes'])} and took "
        f"{fmt_ms(train['time_ms'])} vs {fmt_bytes(infer['peak_memory_bytes'])} and "
        f"{fmt_ms(infer['time_ms'])} for a whole request "
        f"({ratio:.1f}x the memory)"
        if ratio > 1
        else f"Per request the claim held here: one request peaked at {fmt_bytes(infer['peak_memory_bytes'])}, a "
        f"training step at {fmt_bytes(train['peak_memory_bytes'])}"
    )
    example = others[0] if others else None
    at_scale = (
        "; serving needs more than training only with many users at once: past "
        f"{here['users_to_exceed_training']:,} users holding "
        f"{details['context_tokens']:,} tokens each for this model"
        + (f", and by formula past {example['users_to_exceed_training']:,} for {example['name']}" if example else "")
    )
    return per_request + at_scale + "."


def verdict(infer: dict, train: dict, details: dict, *, parameters: int) -> str:
    """A short paragraph judging the claim per request and at scale, each part computed from the numbers it shows."""
    here, others = details["this_model"], details["published_models"]
    train_flops, infer_flops = 6 * parameters * train["tokens"], 2 * parameters * infer["tokens"]  # Kaplan et al. 2020
    ratio = train["peak_memory_bytes"] / infer["peak_memory_bytes"]
    arithmetic = f"{train_flops / 1e9:,.0f} vs {infer_flops / 1e9:,.0f} GFLOP (6 vs 2 x parameters x tokens): " + (
        f"training did {train_flops / infer_flops:.1f}x the arithmetic, so it needs more processing power"
        if train_flops > infer_flops
        else f"this request did {infer_flops / train_flops:.1f}x the training step's arithmetic"
    )
    memory = (
        f"one training step of {train['tokens']} tokens peaked at {fmt_bytes(train['peak_memory_bytes'])}, "
        f"{f'{ratio:.1f}x' if ratio >= 1 else f'{ratio:.0%} of'} the "
        f"{fmt_bytes(infer['peak_memory_bytes'])} of a {infer['tokens']}-token request"
    )
    holds_per_request = infer["peak_memory_bytes"] > train["peak_memory_bytes"]
    parts = [
        f"Per request it {'holds' if holds_per_request else 'is wrong'} here: {memory}; {arithmetic}.",
        "At scale serving memory grows with users x context: past "
        f"{here['users_to_exceed_training']:,} user{'s' if here['users_to_exceed_training'] != 1 else ''} holding "
        f"{details['context_tokens']:,} tokens each, this model's server needs more than its training step.",
    ]
    if others:
        first = others[0]
        parts.append(
            f"By formula, {first['name']} crosses over past {first['users_to_exceed_training']:,} users at "
            f"{details['context_tokens']:,} tokens, or {first['users_to_exceed_training_at_full_context']:,} at its "
            f"full {first['context_length']:,}-token window (lower bounds: real training also holds activations)."
        )
    if holds_per_request:
        parts.append("So the claim held even for a single request on this machine.")
    else:
        parts.append("So the claim holds for a busy service with long conversations, not for a single request.")
    return " ".join(parts)


def compare_per_request(infer: dict, train: dict) -> str:
    """Which costs more, a training step or one request, in memory and in time per token, from the measured rows."""
    memory_ratio = train["peak_memory_bytes"] / infer["peak_memory_bytes"]
    train_ms_per_token, infer_ms_per_token = train["time_ms"] / train["tokens"], infer["time_ms"] / infer["tokens"]
    memory = (
        f"Learning a recipe took {memory_ratio:.1f}x the memory of cooking one order"
        if memory_ratio >= 1
        else f"Learning a recipe took less memory than cooking one order ({memory_ratio:.0%} of it)"
    )
    if train_ms_per_token >= infer_ms_per_token:
        time = f"and {train_ms_per_token / infer_ms_per_token:.1f}x the time per token"
    else:
        time = (
            f"but less time per token ({train_ms_per_token:,.1f} vs {infer_ms_per_token:,.1f} ms: training reads its "
            "whole batch at once, while a request makes its answer one token at a time)"
        )
    return f"{memory}, {time}."
