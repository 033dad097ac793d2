"""The command line: bad input gives exit code 2 and one line on stderr, before anything heavy is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import engine_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trace", "--prompt", "   "], "error: the prompt is empty"),
        (["trace", "--prompt", "hi", "--max-new-tokens", "0"], "error: max_new_tokens must be a whole number above 0"),
        (["trace", "--prompt", "hi", "--max-new-tokens", "999999"], "cap"),
        (["trace", "--prompt", "hi", "--device", "quantum"], "error: unknown device 'quantum'"),
        (["trace", "--prompt", "hi", "--dtype", "float7"], "error: unknown dtype 'float7'"),
        (["trace", "--prompt", "hi", "--model", "/no/such/folder"], "there is no folder at that path"),
        (["trace", "--prompt", "hi", "--temperature", "-2"], "error: temperature"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    out = tmp_path / "never.json"
    result = engine_cli(*args, "--out", str(out))
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["experiment", "prefill", "--prompt-lengths", "16,0"],
            "error: prompt lengths must be a list of positive whole numbers",
        ),
        (["experiment", "batch", "--budget-s", "0"], "error: the time budget must be above 0 seconds"),
        (["experiment", "roofline", "--device", "quantum"], "error: unknown device 'quantum'"),
    ],
)
def test_bad_experiment_options_exit_2_before_loading(args, message, tmp_path):
    out = tmp_path / "never.json"
    result = engine_cli(*args, "--out", str(out))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_unparseable_lists_and_unknown_experiments_are_usage_errors():
    result = engine_cli("experiment", "prefill", "--prompt-lengths", "a,b")
    assert result.returncode == 2 and "expected whole numbers separated by commas" in result.stderr
    result = engine_cli("experiment", "soup")
    assert result.returncode == 2 and "invalid choice: 'soup'" in result.stderr
