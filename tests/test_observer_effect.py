"""Watching a run live must not slow the model: the page's ITL against the same run through the CLI."""

from __future__ import annotations

import pytest
from benchmarks.observer_effect import measure

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# The goal is within 10% (the benchmark `tests/benchmarks/observer_effect.py` reports the figure). On the
# shared 2-core VM where CI runs, Chromium draws on the same two cores (sharing cache and memory bandwidth
# with a bandwidth-bound decode), and one run's ITL moves by +-15% on its own: ratios of medians measured
# there were 0.95, 1.08, 1.16 and 1.25 (README). The bound is the worst of those plus a margin of 0.1 for a
# busier CI box: the real failures seen while building the page (drawing in the model's interpreter,
# Streamlit's per-rerun GC: 4-20x slower) are far past it.
CI_BOUND = 1.35


def test_watching_a_run_live_does_not_slow_the_model(tmp_path):
    result = measure(4, tmp_path)
    print(
        f"CLI ITL p50 per round {result.cli_itl_ms}, live page {result.page_itl_ms}, ratio of medians "
        f"{result.ratio:.3f}"
    )
    assert all(value > 0 for value in result.cli_itl_ms + result.page_itl_ms)
    assert result.ratio < CI_BOUND
