"""Observer-effect benchmark: does watching a run live in the browser slow the model down?

    .venv/bin/python tests/benchmarks/observer_effect.py --rounds 5

Starts the dashboard on a free loopback port, opens it in headless Chromium (on this same machine, so the
browser's drawing competes for the same cores), and alternates: one run through `python -m engine trace`,
one identical run on the live page while it redraws. Prints both runs' inter-token latency p50 per round
and the ratio of medians (the goal: the page within 10% of the CLI).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent))

from browser import ROOT, chromium, dashboard_server, generate, wait_for_model  # noqa: E402

from engine import load_trace  # noqa: E402

PROMPT = "Write a long story about a chef who cooks soup."
NEW_TOKENS = 64  # the model does not stop before 64 tokens on this prompt, so every run decodes the same length


@dataclass(frozen=True)
class ObserverResult:
    """Per-round ITL p50 of the CLI and of the live page, and the ratio of their medians."""

    cli_itl_ms: tuple[float, ...]
    page_itl_ms: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """Median page ITL p50 over median CLI ITL p50 (1.0 = no observer effect)."""
        return statistics.median(self.page_itl_ms) / statistics.median(self.cli_itl_ms)


def cli_itl_p50(out: Path) -> float:
    """One run through the CLI with the same prompt, settings and CPU threads as the page's."""
    from app.early import dashboard_threads

    subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "trace",
            "--prompt",
            PROMPT,
            "--max-new-tokens",
            str(NEW_TOKENS),
            "--out",
            str(out),
            "--threads",
            str(dashboard_threads()),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return load_trace(out).summary.itl_p50_ms


def page_itl_p50(page, traces: Path) -> float:
    """One run on the live page while it redraws; its trace is the one the dashboard saved."""
    before = set(traces.glob("*.json")) if traces.exists() else set()
    generate(page, PROMPT, max_new_tokens=NEW_TOKENS)
    deadline = time.monotonic() + 300
    while not (set(traces.glob("*.json")) - before if traces.exists() else set()):
        if time.monotonic() > deadline:
            raise TimeoutError("the page's run did not finish in 5 minutes")
        page.wait_for_timeout(200)
    page.wait_for_timeout(1000)  # let the final redraw settle before the next run starts
    (new,) = set(traces.glob("*.json")) - before
    return load_trace(new).summary.itl_p50_ms


def measure(rounds: int, workdir: Path) -> ObserverResult:
    """Alternate CLI and page runs `rounds` times (after one warm-up of each)."""
    data = workdir / "data"
    with dashboard_server(data, workdir / "server.log") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        wait_for_model(page)
        cli_itl_p50(workdir / "cli.json")
        page_itl_p50(page, data / "traces")
        cli, shown = [], []
        for _ in range(rounds):
            cli.append(cli_itl_p50(workdir / "cli.json"))
            shown.append(page_itl_p50(page, data / "traces"))
        return ObserverResult(cli_itl_ms=tuple(cli), page_itl_ms=tuple(shown))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        result = measure(args.rounds, Path(workdir))
    for index, (cli, shown) in enumerate(zip(result.cli_itl_ms, result.page_itl_ms, strict=True), 1):
        print(f"round {index}: CLI ITL p50 {cli:6.1f} ms   live page ITL p50 {shown:6.1f} ms   ratio {shown / cli:.3f}")
    print(
        json.dumps(
            {
                "cli_median_ms": statistics.median(result.cli_itl_ms),
                "page_median_ms": statistics.median(result.page_itl_ms),
                "ratio": round(result.ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
