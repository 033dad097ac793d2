"""What HTTP, a server and streaming add: the same prompt and model in-process and through `transformers serve`.

Run from the repository root:  .venv/bin/python tests/benchmarks/remote_vs_local.py [--rounds 5] [--tokens 64]
It starts `transformers serve` on a free loopback port with the cached default model (offline), then alternates
one in-process trace and one remote trace per round (greedy, the same prompt, the same token budget; one at a
time, so neither competes for the cores) and prints each side's median TTFT, ITL p50 and decode tokens/s, and
their ratios. The remote times are taken at this client: they include the HTTP request, the server's own
tokenization and chat template, its generation loop and the streaming of each chunk.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402 - after the path line, like every benchmark here

from engine import GenerationSettings, load_model, run_trace  # noqa: E402
from engine.loading import default_model_folder  # noqa: E402
from engine.remote import parse_endpoint  # noqa: E402
from engine.remote_run import run_remote_trace  # noqa: E402

PROMPT = "Write a short story about a chef who cooks soup."  # a long answer: many gaps for ITL


def start_server(folder: str, port: int) -> subprocess.Popen:
    """`transformers serve FOLDER` on 127.0.0.1:port, returned once /v1/models answers."""
    binary = Path(sys.executable).parent / "transformers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([str(binary), "serve", folder, "--port", str(port), "--host", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("transformers serve did not start in 180 s")


def main() -> int:
    """Alternate local and remote runs; print medians and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt", default=PROMPT)
    args = parser.parse_args()
    folder = str(default_model_folder())
    loaded = load_model(threads=2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_server(folder, port)
    endpoint = parse_endpoint(f"http://127.0.0.1:{port}/v1")
    settings = GenerationSettings(max_new_tokens=args.tokens, temperature=0.0)
    figures: dict[str, dict[str, list[float]]] = {"in-process": {}, "transformers serve": {}}
    try:
        run_remote_trace(endpoint, args.prompt, model=folder, settings=settings)  # warm both up once
        run_trace(loaded, args.prompt, settings=settings)
        for index in range(args.rounds):
            local = run_trace(loaded, args.prompt, settings=settings)
            remote = run_remote_trace(endpoint, args.prompt, model=folder, settings=settings)
            for name, trace in (("in-process", local), ("transformers serve", remote)):
                summary = trace.summary
                row = {"ttft_ms": summary.ttft_ms, "itl_p50_ms": summary.itl_p50_ms,
                       "tokens_per_s": summary.decode_tokens_per_s, "tokens": summary.new_tokens}  # fmt: skip
                for key, value in row.items():
                    figures[name].setdefault(key, []).append(value)
            print(f"round {index + 1}: in-process TTFT {local.summary.ttft_ms:.1f} ms, ITL "
                  f"{local.summary.itl_p50_ms:.1f} ms; served TTFT {remote.summary.ttft_ms:.1f} ms, ITL "
                  f"{remote.summary.itl_p50_ms:.1f} ms ({remote.remote['count_check']})", flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    medians = {name: {key: statistics.median(values) for key, values in rows.items()} for name, rows in figures.items()}
    for name, row in medians.items():
        print(f"{name:>20}: TTFT {row['ttft_ms']:7.1f} ms   ITL p50 {row['itl_p50_ms']:6.1f} ms   "
              f"decode {row['tokens_per_s']:5.1f} tokens/s   ({row['tokens']:.0f} tokens)")  # fmt: skip
    local, remote = medians["in-process"], medians["transformers serve"]
    print(f"served / in-process: TTFT {remote['ttft_ms'] / local['ttft_ms']:.2f}x "
          f"(+{remote['ttft_ms'] - local['ttft_ms']:.1f} ms), ITL {remote['itl_p50_ms'] / local['itl_p50_ms']:.2f}x "
          f"(+{remote['itl_p50_ms'] - local['itl_p50_ms']:.1f} ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
