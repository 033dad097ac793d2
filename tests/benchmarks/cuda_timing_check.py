"""Timing honesty on CUDA: each recorded decode latency must cover the GPU work of that step, not just its launch.

Run from the repository root on a machine with an NVIDIA GPU:  python tests/benchmarks/cuda_timing_check.py
It times one decode forward pass with CUDA events (the GPU's own clock, no host in between) and compares the
trace's recorded decode latencies with it: a recorded step shorter than the GPU's own time for that work would
mean the clock was read before the GPU finished (a missing synchronize). It also checks that the trace's clock
and the host's wall clock agree over the whole run. Prints one line per figure; exits 1 if a check fails.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from transformers import DynamicCache

from engine import GenerationSettings, load_model, run_trace
from engine.generate import cache_keyword

PROMPT = "Write a long story about a chef who cooks soup."


def gpu_decode_ms(loaded, *, steps: int = 30) -> float:
    """Median GPU time of one decode forward pass (batch 1, after a 32-token prompt), by CUDA events."""
    ids = torch.randint(100, 1000, (1, 32), device=loaded.device)  # (1, 32)
    cache = DynamicCache()
    with torch.inference_mode():
        by_name = {cache_keyword(type(loaded.model)): cache}
        logits = loaded.model(input_ids=ids, use_cache=True, **by_name).logits  # (1, 32, vocab)
        token = logits[:, -1:].argmax(-1)  # (1, 1)
        times = []
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            logits = loaded.model(input_ids=token, use_cache=True, **by_name).logits  # (1, 1, vocab)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
            token = logits[:, -1:].argmax(-1)  # (1, 1)
    return statistics.median(times[5:])


def main() -> int:
    loaded = load_model(device="cuda")
    settings = GenerationSettings(max_new_tokens=64, stop_at_eos=False)
    run_trace(loaded, PROMPT, settings=settings)  # warm-up
    torch.cuda.synchronize()
    began = time.perf_counter()
    trace = run_trace(loaded, PROMPT, settings=settings)
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - began) * 1000
    decode = sorted(r.latency_ms for r in trace.events if r.phase == "decode")
    recorded_p10, recorded_p50 = decode[len(decode) // 10], statistics.median(decode)
    gpu_ms = gpu_decode_ms(loaded)
    print(f"device: {torch.cuda.get_device_name()} · torch {torch.__version__} · dtype {loaded.dtype}")
    print(f"decode step on the GPU's own clock (CUDA events, median): {gpu_ms:.3f} ms")
    print(f"recorded decode latency: p10 {recorded_p10:.3f} ms, p50 {recorded_p50:.3f} ms")
    print(f"answer: {trace.answer[:80]!r}")
    print(f"trace total {trace.summary.total_ms:.1f} ms vs host wall clock around the run {wall_ms:.1f} ms")
    failures = []
    if recorded_p50 < 0.9 * gpu_ms:  # a launch-bound step keeps the GPU waiting: both clocks then read ~wall time
        failures.append("recorded decode steps are shorter than the GPU's own time for them: a clock read too early")
    if not 0.8 * wall_ms <= trace.summary.total_ms <= wall_ms:
        failures.append("the trace's clock and the wall clock disagree over the run")
    for failure in failures:
        print("FAIL:", failure)
    print("OK" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
