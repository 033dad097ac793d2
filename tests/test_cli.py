"""The command line: bad input gives exit code 2 and one line on stderr, before anything heavy is loaded."""

from __future__ import annotations

import subprocess
import sys
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
    assert len(error_lines) == 1
    assert message in error_lines[0]
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
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_unparseable_lists_and_unknown_experiments_are_usage_errors():
    result = engine_cli("experiment", "prefill", "--prompt-lengths", "a,b")
    assert result.returncode == 2
    assert "expected whole numbers separated by commas" in result.stderr
    result = engine_cli("experiment", "soup")
    assert result.returncode == 2
    assert "invalid choice: 'soup'" in result.stderr


@pytest.mark.slow
def test_ctrl_c_mid_run_exits_130_and_writes_nothing(tmp_path):
    import os
    import signal
    import time

    from conftest import ROOT

    out = tmp_path / "never.json"
    command = [sys.executable, "-m", "engine", "trace", "--prompt", "Tell a long story.", "--max-new-tokens", "2000",
               "--ignore-eos", "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # loading progress arrives on stderr; the run starts right after "ready"
        if "ready" in line.lower() or "100%" in line:
            break
    time.sleep(2)  # well inside the 2,000-token run (~1-2 minutes here)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "error: cancelled; nothing was written" in rest
    assert not out.exists()
    kept = Path(os.environ["INFERENCE_KITCHEN_DATA"]) / "traces"  # the run store the CLI keeps every trace in
    assert not list(kept.glob("*.json"))
