"""Kitchen benchmark: eight visitors at once against one alone, our batched loop against transformers' manager.

    .venv/bin/python tests/benchmarks/kitchen_bench.py [--threads N] [--requests 8] [--new-tokens 40] [--no-cbm]

In one process, on the default model, greedy, every request exactly `--new-tokens` tokens (no early stop):
1. one request alone through the kitchen (engine.serving): its decode tokens/s and time to the last token;
2. the same request alone through the single-request loop (engine.generate): the dashboard's old path;
3. `--requests` distinct requests at once through the kitchen: aggregate tokens/s (all tokens / wall time),
   when the last one finished, and whether each answer equals that request's answer alone;
4. the same requests one after another through the single-request loop (the old kitchen's queue);
5. transformers' ContinuousBatchingManager (paged cache, sdpa) on the same requests and alone, timed the same
   way from outside (it exposes no per-step logits to take the top-5 from), after its own warm-up batch.
Prints every figure and the ratios the issue asks for: aggregate >= 3x alone, lone kitchen >= 0.95x old loop.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from engine import GenerationSettings, load_model, prepare_request, stream_generate
from engine.serving import Kitchen, Order, serve_alone

PROMPTS = [
    "What is the capital of France?",
    "Name three colours.",
    "What is 2 plus 2?",
    "Say hello in Spanish.",
    "What is the largest planet?",
    "Who wrote Hamlet?",
    "What is water made of?",
    "Name a fruit.",
    "How many legs does a spider have?",
    "What colour is the sky?",
    "Name a musical instrument.",
    "What do bees make?",
    "What is ice?",
    "Name a vegetable.",
    "What is the opposite of hot?",
    "Name an ocean.",
]


def decode_rate(events) -> float:
    """(tokens - 1) / (last token time - first token time): decode steps only."""
    return (len(events) - 1) / ((events[-1].t_ms - events[0].t_ms) / 1000)


def together(loaded, requests) -> tuple[float, float, list[list[int]], float]:
    """All requests at once through one kitchen: wall s, aggregate tokens/s, each one's tokens, mean batch size."""
    tokens: list[list[int]] = [[] for _ in requests]
    sizes: list[int] = []
    kitchen = Kitchen(loaded, max_batch=len(requests), on_step=lambda info: sizes.append(info.batch_size))
    for index, request in enumerate(requests):
        kitchen.add(Order(table=index, request=request, on_record=lambda r, i=index: tokens[i].append(r.token_id)))
    began = time.perf_counter()
    while not kitchen.idle:
        kitchen.step()
    wall = time.perf_counter() - began
    return wall, sum(map(len, tokens)) / wall, tokens, statistics.mean(sizes)


def manager_times(loaded, requests, new_tokens: int) -> tuple[float, float, float]:
    """transformers' ContinuousBatchingManager: warm-up s, all requests' wall s, one request's wall s."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=new_tokens, do_sample=False, eos_token_id=-1, pad_token_id=loaded.facts.eos_token_ids[0]
    )
    began = time.perf_counter()
    manager = loaded.model.init_continuous_batching(generation_config=config)
    manager.start()
    try:
        warm = [manager.add_request(list(r.token_ids), max_new_tokens=new_tokens) for r in requests[:2]]
        for request_id in warm:
            manager.get_result(request_id=request_id, timeout=600)
        warm_up_s = time.perf_counter() - began
        began = time.perf_counter()
        ids = [manager.add_request(list(r.token_ids), max_new_tokens=new_tokens) for r in requests]
        for request_id in ids:
            manager.get_result(request_id=request_id, timeout=600)
        all_s = time.perf_counter() - began
        began = time.perf_counter()
        manager.get_result(
            request_id=manager.add_request(list(requests[0].token_ids), max_new_tokens=new_tokens), timeout=600
        )
        alone_s = time.perf_counter() - began
    finally:
        manager.stop(block=True)
    return warm_up_s, all_s, alone_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the dashboard's)")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--no-cbm", action="store_true", help="skip transformers' ContinuousBatchingManager")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the engine's pick)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the engine's pick)")
    args = parser.parse_args()
    from app.early import dashboard_threads

    threads = args.threads or dashboard_threads()
    loaded = load_model(device=args.device, dtype=args.dtype, threads=threads)
    settings = GenerationSettings(max_new_tokens=args.new_tokens, stop_at_eos=False)
    requests = [prepare_request(loaded, prompt, settings=settings) for prompt in PROMPTS[: args.requests]]
    print(
        f"{loaded.facts.name} · {loaded.facts.dtype} on {loaded.device} · {threads} thread(s) · "
        f"{args.requests} requests × {args.new_tokens} tokens, greedy"
    )
    list(serve_alone(loaded, requests[0]))  # warm-up
    alone_began = time.perf_counter()
    lone = list(serve_alone(loaded, requests[0]))
    alone_s = time.perf_counter() - alone_began
    old = list(stream_generate(loaded, requests[0]))
    alone_rate, old_rate = decode_rate(lone), decode_rate(old)
    print(f"alone, kitchen:            {alone_s:6.2f} s   decode {alone_rate:6.2f} tokens/s")
    print(
        f"alone, single-request loop:          decode {old_rate:6.2f} tokens/s   "
        f"(kitchen / loop {alone_rate / old_rate:.3f}; goal >= 0.95)"
    )
    wall, aggregate, tokens, mean_batch = together(loaded, requests)
    same = sum(t == [r.token_id for r in stream_generate(loaded, q)] for t, q in zip(tokens, requests, strict=True))
    print(
        f"{args.requests} at once, kitchen:     {wall:6.2f} s   {aggregate:6.2f} tokens/s all together "
        f"(mean batch {mean_batch:.1f}); {same}/{args.requests} answers equal their lone answers"
    )
    sequential_began = time.perf_counter()
    for request in requests:
        list(stream_generate(loaded, request))
    sequential_s = time.perf_counter() - sequential_began
    print(
        f"{args.requests} one after another:    {sequential_s:6.2f} s   "
        f"{args.requests * args.new_tokens / sequential_s:6.2f} tokens/s (the old kitchen's queue)"
    )
    lone_rate = args.new_tokens / alone_s
    print(
        f"aggregate / alone (end to end): {aggregate / lone_rate:.2f}x (goal >= 3x); "
        f"the last of {args.requests} finished {wall / alone_s:.2f}x a lone request's time (goal <= 3x); "
        f"sequential {sequential_s / alone_s:.2f}x"
    )
    if not args.no_cbm:
        warm_up_s, cbm_all_s, cbm_alone_s = manager_times(loaded, requests, args.new_tokens)
        print(
            f"transformers ContinuousBatchingManager: start + 2-request warm-up {warm_up_s:.2f} s; "
            f"{args.requests} at once {cbm_all_s:.2f} s ({args.requests * args.new_tokens / cbm_all_s:.2f} tokens/s); "
            f"alone {cbm_alone_s:.2f} s ({args.new_tokens / cbm_alone_s:.2f} tokens/s)"
        )
        print(
            f"kitchen / manager: {cbm_all_s / wall:.2f}x faster with {args.requests} at once, "
            f"{cbm_alone_s / alone_s:.2f}x alone"
        )


if __name__ == "__main__":
    main()
