"""The memory wall: measure this machine's bandwidth and matmul peak, then decode against its ceiling.

Decode at batch 1 reads every weight once per token, so tokens/s <= bandwidth / (weight bytes + KV bytes read).
With `paths`, the compiled decode paths (engine.paths) are measured the same way: the ceiling approached.
MBU = achieved bytes/s / measured bytes/s; prefill's MFU = (2 x parameters x tokens / time) / measured FLOP/s
(Databricks' "LLM inference performance engineering"; Kaplan et al. 2020 for the FLOP count).
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
from dataclasses import dataclass, field

import psutil
import torch

from engine.errors import SettingsError
from engine.experiments.base import Measured, Options, Progress, require_positive
from engine.experiments.common import max_prompt_tokens, prompt_ids
from engine.experiments.prefill import prefill_and_decode
from engine.facts import DECODE_PATHS, kv_bytes_per_token
from engine.hardware import DTYPES, available_dtypes, dtype_name, timed_ms
from engine.loading import LoadedModel
from engine.paths import DEFAULT_MAX_LEN, PathUnavailable, PreparedPath, prepare_path
from engine.quantize import int8_weight_only_support, quantize_int8_weight_only, weight_bytes_read_per_token
from engine.units import fmt_bytes


@dataclass(frozen=True, kw_only=True)
class RooflineOptions(Options):
    """How hard to measure the machine, and how long each dtype decodes."""

    repeats: int = field(
        default=7, metadata={"help": "repeats of the bandwidth and matmul measurements (best is the peak)"}
    )
    bandwidth_mb: int = field(
        default=256, metadata={"help": "size of the tensor read to measure bandwidth (MB, well above the caches)"}
    )
    decode_tokens: int = field(default=24, metadata={"help": "decode steps timed per dtype"})
    prefill_tokens: int = field(default=128, metadata={"help": "prompt length for prefill's FLOP utilization"})
    include_int8: bool = field(
        default=True, metadata={"help": "also try int8 weight-only where the device has a kernel"}
    )
    paths: tuple[str, ...] = field(
        default=(),
        metadata={"help": "compiled decode paths to add (each prepared first: minutes the first time)"},
    )

    def check(self) -> None:
        require_positive(
            repeats=self.repeats,
            bandwidth_mb=self.bandwidth_mb,
            decode_tokens=self.decode_tokens,
            prefill_tokens=self.prefill_tokens,
        )
        compiled = [name for name in DECODE_PATHS if name != "eager"]
        if any(name not in compiled for name in self.paths):
            raise SettingsError(f"paths must be some of {', '.join(compiled)}, not {list(self.paths)}")
        if self.paths and self.prefill_tokens + self.decode_tokens + 2 > DEFAULT_MAX_LEN:
            raise SettingsError(
                f"with compiled paths, prefill plus decode tokens must fit their {DEFAULT_MAX_LEN}-position cache"
            )


def measure_bandwidth(device: torch.device, *, size_bytes: int, repeats: int) -> dict:
    """Read bandwidth: sum a float32 tensor far larger than the caches (each byte read once); best of repeats."""
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    size_bytes = max(1 << 20, min(size_bytes, free // 4))
    tensor = torch.ones(size_bytes // 4, device=device)  # (n,) float32
    tensor.sum()  # warm-up: pages touched, kernels loaded
    times = [timed_ms(device, tensor.sum)[0] for _ in range(repeats)]
    copy_target = torch.empty_like(tensor)
    copy_times = [timed_ms(device, lambda: copy_target.copy_(tensor))[0] for _ in range(max(2, repeats // 2))]
    return {
        "bandwidth_bytes_per_s": size_bytes / (min(times) / 1000),
        "bandwidth_median_bytes_per_s": size_bytes / (statistics.median(times) / 1000),
        "copy_bytes_per_s": 2 * size_bytes / (min(copy_times) / 1000),  # a copy reads and writes every byte
        "bandwidth_method": (
            f"sum of a {fmt_bytes(size_bytes)} float32 tensor on {device} (reads each byte once), best of "
            f"{repeats} after a warm-up, "
            f"{torch.get_num_threads()} CPU thread(s)"
        ),
    }


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, *, repeats: int) -> float:
    """Peak matrix-multiply FLOP/s in a dtype: 2 x n^3 per n x n product, best of repeats."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)  # (n, n)
    b = torch.randn(n, n, device=device).to(dtype)  # (n, n)
    a @ b  # warm-up
    best_ms = min(timed_ms(device, lambda: a @ b)[0] for _ in range(repeats))
    return 2 * n**3 / (best_ms / 1000)


def variants(loaded: LoadedModel, *, include_int8: bool) -> list[tuple[str, str, str | None]]:
    """(label, compute dtype, why skipped or None) for every weight format this device can try."""
    found = [(name, name, None) for name in available_dtypes(loaded.device)]
    if include_int8:
        compute = "bfloat16" if "bfloat16" in available_dtypes(loaded.device) else dtype_name(loaded.dtype)
        found.append(("int8", compute, int8_weight_only_support(loaded.device)))
    return found


def model_variant(loaded: LoadedModel, label: str, compute: str) -> LoadedModel:
    """The loaded model itself, or a copy cast to another dtype (and stored as int8 for 'int8')."""
    if label == dtype_name(loaded.dtype):
        return loaded
    model = copy.deepcopy(loaded.model).to(DTYPES[compute])
    if label == "int8":
        model = quantize_int8_weight_only(model)
    return dataclasses.replace(loaded, model=model, dtype=DTYPES[compute])


def run(loaded: LoadedModel, options: RooflineOptions, progress: Progress) -> Measured:
    """Measure the machine, then each dtype's decode against its ceiling and prefill against its peak."""
    progress(0.02, "Measuring memory bandwidth")
    machine = measure_bandwidth(loaded.device, size_bytes=options.bandwidth_mb * 1_000_000, repeats=options.repeats)
    bandwidth = machine["bandwidth_bytes_per_s"]
    prompt_tokens = min(options.prefill_tokens, max_prompt_tokens(loaded, new_tokens=options.decode_tokens))
    candidates = variants(loaded, include_int8=options.include_int8)
    rows, skipped, peak_flops = progress.rows, {}, {}
    context = {"bandwidth": bandwidth, "prompt_tokens": prompt_tokens, "parameters": loaded.facts.parameters}
    for index, (label, compute, why_not) in enumerate(candidates):
        if why_not:
            skipped[label] = why_not
            continue
        progress(0.1 + 0.9 * index / len(candidates), f"Measuring the matmul peak in {compute}")
        if compute not in peak_flops:
            peak_flops[compute] = measure_matmul_flops(loaded.device, DTYPES[compute], repeats=options.repeats)
        progress(0.1 + 0.9 * (index + 0.3) / len(candidates), f"Decoding with {label} weights")
        variant = model_variant(loaded, label, compute)
        ids = prompt_ids(variant, prompt_tokens)  # (1, T)
        prefill_and_decode(variant, ids[:, :8], decode_tokens=2)  # warm-up, not measured
        prefill_ms, step_ms = prefill_and_decode(variant, ids, decode_tokens=options.decode_tokens + 1)
        facts = loaded.facts
        per_token = kv_bytes_per_token(  # the cache keeps the compute dtype
            layers=facts.layers,
            kv_heads=facts.kv_heads,
            head_dim=facts.head_dim,
            element_bytes=DTYPES[compute].itemsize,
        )
        kv_bytes = per_token * (prompt_tokens + options.decode_tokens // 2)  # the cache read at a middle step
        weight_bytes = weight_bytes_read_per_token(variant.model)
        rows.append(
            measured_row(label, compute, weight_bytes, kv_bytes, prefill_ms, step_ms, peak_flops, context=context)
        )
        del variant
    for name in options.paths:
        progress(0.9, f"Preparing the {name} path (compiling takes minutes the first time)")
        try:
            path = prepare_path(loaded, name, on_progress=lambda message: progress(0.9, message))
        except PathUnavailable as err:
            skipped[name] = str(err)
            continue
        compute = path.describe()["dtype"]
        if compute not in peak_flops:
            peak_flops[compute] = measure_matmul_flops(loaded.device, DTYPES[compute], repeats=options.repeats)
        progress(0.95, f"Decoding on the {name} path")
        ids = prompt_ids(loaded, prompt_tokens)  # (1, T)
        prefill_ms, step_ms = path_prefill_and_decode(path, ids, decode_tokens=options.decode_tokens + 1)
        weight_bytes = weight_bytes_read_per_token(path.model)
        kv_bytes = path.decoder.allocated_bytes()  # a static cache is read whole, masked positions included
        rows.append(
            measured_row(name, compute, weight_bytes, kv_bytes, prefill_ms, step_ms, peak_flops, context=context)
        )
    progress(1.0, "Done")
    peak_notes = raise_peaks_to_what_ran(rows, peak_flops)
    details = {
        **machine,
        "peak_flops": peak_flops.get(dtype_name(loaded.dtype)) or next(iter(peak_flops.values())),
        "peak_flops_by_dtype": peak_flops,
        "flops_method": f"best of {options.repeats} square matrix products "
        f"({'4096' if loaded.device.type == 'cuda' else '1024'} x same) per dtype, 2 x n^3 FLOPs each",
        "peak_flops_notes": peak_notes,
        "skipped": skipped,
        "threads": torch.get_num_threads(),
    }
    return Measured(rows=rows, details=details, finding=finding(rows, details))


def measured_row(
    label: str,
    compute: str,
    weight_bytes: int,
    kv_bytes: int,
    prefill_ms: float,
    step_ms: list[float],
    peak_flops: dict[str, float],
    *,
    context: dict,
) -> dict:
    """One row: a decode step's bytes, speed and ceiling, and its prefill's FLOP rate against the peak."""
    bandwidth, prompt_tokens = context["bandwidth"], context["prompt_tokens"]
    bytes_per_token = weight_bytes + kv_bytes
    itl_ms = statistics.median(step_ms)
    tokens_per_s = 1000 / itl_ms
    prefill_flops_per_s = 2 * context["parameters"] * prompt_tokens / (prefill_ms / 1000)
    return {
        "dtype": label,
        "compute_dtype": compute,
        "weight_bytes_read": weight_bytes,
        "kv_bytes_read": kv_bytes,
        "bytes_per_token": bytes_per_token,
        "decode_tokens_per_s": tokens_per_s,
        "ceiling_tokens_per_s": bandwidth / bytes_per_token,
        "mbu": bytes_per_token * tokens_per_s / bandwidth,
        "step_ms": itl_ms,  # one decode step, median
        "read_ms": bytes_per_token / bandwidth * 1000,  # reading its bytes at the measured bandwidth
        "overhead_ms": max(0.0, itl_ms - bytes_per_token / bandwidth * 1000),  # the rest of the step
        "prefill_tokens": prompt_tokens,
        "prefill_ms": prefill_ms,
        "prefill_flops_per_s": prefill_flops_per_s,
        "peak_flops": peak_flops[compute],
        "mfu": prefill_flops_per_s / peak_flops[compute],
    }


@torch.inference_mode()
def path_prefill_and_decode(path: PreparedPath, ids: torch.Tensor, *, decode_tokens: int) -> tuple[float, list[float]]:
    """prefill_and_decode through a compiled path: its uncompiled prefill, then its compiled greedy steps."""
    decoder, device = path.decoder, path.decoder.device
    decoder.reset()
    prefill_ms, logits = timed_ms(device, lambda: decoder.forward(ids, torch.arange(ids.shape[1], device=device)))
    step_ms = []
    for position in range(ids.shape[1], ids.shape[1] + decode_tokens - 1):
        token = logits.argmax(dim=-1, keepdim=True)  # (1, 1)
        where = torch.tensor([position], device=device)  # (1,)
        elapsed, logits = timed_ms(device, lambda token=token, where=where: path.step(token, where))  # (1, vocab)
        step_ms.append(elapsed)
    decoder.reset()
    return prefill_ms, step_ms


def raise_peaks_to_what_ran(rows: list[dict], peak_flops: dict[str, float]) -> dict[str, str]:
    """Where the model's own prefill beat the square-product benchmark, that benchmark was no peak: use the prefill.

    Measured on a CPU without native bfloat16 (AMD EPYC, AVX2): 1024^2 bfloat16 products ran at 0.9 GFLOP/s
    while the model's bfloat16 prefill reached 19; an MFU of 2,200% would teach nothing. Updates `peak_flops`,
    each row's `peak_flops` and `mfu` in place, and returns one sentence per dtype whose peak was raised.
    """
    notes = {}
    for row in rows:
        compute = row["compute_dtype"]
        if row["prefill_flops_per_s"] > peak_flops[compute]:
            notes[compute] = (
                f"{compute}: the square products ran at {peak_flops[compute] / 1e9:,.1f} GFLOP/s, slower than the "
                f"model's own prefill ({row['prefill_flops_per_s'] / 1e9:,.1f} GFLOP/s), which is taken as the peak"
            )
            peak_flops[compute] = row["prefill_flops_per_s"]
    for row in rows:
        row["peak_flops"] = peak_flops[row["compute_dtype"]]
        row["mfu"] = row["prefill_flops_per_s"] / row["peak_flops"]
    return notes


MEMORY_BOUND_MBU = 0.5  # at or above it, reading the bytes is most of a decode step: memory sets the pace
IN_PROPORTION = 0.8  # a speed-up of at least 80% of the bytes saved counts as "nearly in proportion"


def finding(rows: list[dict], details: dict) -> str:
    """Where decode sits under its ceiling, what the rest of a step was, and whether fewer bytes meant speed."""
    base = rows[0]
    sentence = (
        f"Decoding in {base['dtype']} read {fmt_bytes(base['bytes_per_token'])} per token and ran at "
        f"{base['decode_tokens_per_s']:,.1f} tokens/s, {base['mbu']:.0%} of the {base['ceiling_tokens_per_s']:,.1f} "
        f"tokens/s ceiling that the measured {details['bandwidth_bytes_per_s'] / 1e9:,.1f} GB/s allows"
    )
    if base["mbu"] >= MEMORY_BOUND_MBU:
        pace = "reading the weights was most of each step: memory set the pace"
    else:
        pace = (
            f"reading its bytes at that bandwidth takes {base['read_ms']:,.1f} ms of each {base['step_ms']:,.1f} ms "
            f"step; the other {base['overhead_ms']:,.1f} ms is framework and kernel-launch overhead, not memory"
        )
    if len(rows) == 1:
        return f"{sentence}: {pace}."
    others = "; ".join(compare_format(base, row) for row in rows[1:])
    return f"{sentence}: {pace}. {others}."


def compare_format(base: dict, row: dict) -> str:
    """How another weight format did against the first: bytes saved against speed gained."""
    fewer = base["bytes_per_token"] / row["bytes_per_token"]
    speedup = row["decode_tokens_per_s"] / base["decode_tokens_per_s"]
    said = f"{row['dtype']} read {fewer:.1f}x fewer bytes and ran {speedup:.2f}x as fast"
    if fewer <= 1:
        said = f"{row['dtype']} read no fewer bytes and ran {speedup:.2f}x as fast"
        if speedup > 1:  # a compiled path: the same bytes, less of everything else
            return (
                f"{said}: the rest of each step shrank from {base['overhead_ms']:,.1f} to "
                f"{row['overhead_ms']:,.1f} ms, which brought it to {row['mbu']:.0%} of its ceiling"
            )
        return said
    if speedup <= 1:
        return f"{said}: fewer bytes did not make it faster, so its kernels, not memory, held it back here"
    if speedup > fewer:
        return f"{said}: more than the bytes saved, so the rest of each step shrank too"
    if speedup >= IN_PROPORTION * fewer:
        return f"{said}: nearly in proportion to the bytes saved"
    return f"{said}: faster, but far less than the bytes saved, as the rest of each step did not shrink"
