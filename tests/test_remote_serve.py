"""A remote run against a real server: `transformers serve` on a free loopback port with the cached default model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, engine_cli

from engine import costs
from engine.served_config import DTYPE_BYTES
from engine.trace import load_trace

pytestmark = pytest.mark.slow
SERVE_START_S = 180  # loading the model and starting uvicorn: ~20 s here; generous for a busy CI machine


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`transformers serve` with the default model's cached folder: (base URL, model name, the process's log)."""
    from engine.loading import default_model_folder

    binary = Path(sys.executable).parent / "transformers"
    if not binary.exists():
        pytest.fail("transformers serve is not installed: `make test` installs the test extras (transformers[serving])")
    folder = str(default_model_folder())
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen([str(binary), "serve", folder, "--port", str(port), "--host", "127.0.0.1"],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVE_START_S
    while True:
        assert process.poll() is None, f"transformers serve exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{base}/v1/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"transformers serve did not start in {SERVE_START_S} s"
        time.sleep(0.5)
    yield f"{base}/v1", folder, log
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_a_trace_from_a_real_server_answers_counts_and_validates(served, tmp_path):
    endpoint, model, _log = served
    out = tmp_path / "remote.json"
    done = engine_cli("trace", "--endpoint", endpoint, "--model", model, "--prompt", "What is the capital of France?",
                      "--max-new-tokens", "24", "--out", str(out), timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    trace = load_trace(out)  # the same contract as a local trace: every check, the summary recomputed from events
    assert "Paris" in trace.answer
    remote = trace.remote
    assert remote["complete"] and remote["host"] == endpoint.split("/")[2]
    assert len(trace.events) == remote["usage"]["completion_tokens"]  # one event per token the server counted
    assert "as many as the server's usage counts" in remote["count_check"]
    assert trace.hardware == {"device": "remote"} and trace.model["source"] == f"remote: {remote['host']}"
    assert all(e.kv_cache_bytes is None and e.memory_bytes is None and e.token_id is None for e in trace.events)
    times = [event.t_ms for event in trace.events]
    assert times == sorted(times) and trace.summary.ttft_ms == times[0] > 0
    assert trace.summary.peak_memory_bytes is None and trace.summary.prefill_tokens_per_s is None
    assert "measured at the client" in remote["clock"] and "time to first token" in done.stdout
    assert remote["metrics"]["samples"] == [] and "no server metrics" in remote["metrics"]["note"]  # it has none
    raw = json.loads(out.read_text())
    assert "api" not in json.dumps(raw["remote"]).lower()  # no key, nor any place one could hide
    assert engine_cli("validate", str(out)).returncode == 0
    # the served folder is on this machine: its config gives the architecture and a KV-bytes estimate
    assert trace.model["config_source"] == "its folder on this machine" and trace.model["layers"] == 30
    element_bytes = DTYPE_BYTES[trace.model["config_dtype"]]
    assert trace.model["kv_bytes_per_token_estimate"] == 2 * 30 * 3 * 64 * element_bytes  # SmolLM2-135M's shape
    # the Costs page can price it: the server counts the prompt (chat template included), so prefill is estimated
    rate, why = costs.throughput_from_server_trace(trace)
    assert why is None and remote["usage"]["prompt_tokens"] > len("What is the capital of France?".split())
    assert rate.prefill_tokens_per_s == pytest.approx(remote["usage"]["prompt_tokens"] / (times[0] / 1000))


def test_a_key_is_sent_from_its_variable_and_never_written(served, tmp_path):
    endpoint, model, _log = served
    out = tmp_path / "keyed.json"
    done = engine_cli("trace", "--endpoint", endpoint, "--model", model, "--prompt", "Say hi.", "--max-new-tokens",
                      "4", "--api-key-env", "KITCHEN_TEST_KEY", "--out", str(out),
                      env_extra={"KITCHEN_TEST_KEY": "sk-kitchen-secret-123"})  # fmt: skip
    assert done.returncode == 0, done.stderr  # transformers serve accepts any key
    assert "sk-kitchen-secret-123" not in out.read_text() and "sk-kitchen-secret-123" not in done.stdout
    missing = engine_cli("trace", "--endpoint", endpoint, "--model", model, "--prompt", "hi",
                         "--api-key-env", "KITCHEN_NO_SUCH_VARIABLE")  # fmt: skip
    assert missing.returncode == 2 and "KITCHEN_NO_SUCH_VARIABLE is not set" in missing.stderr


@pytest.mark.browser
def test_the_live_page_streams_from_a_real_server_in_a_browser_and_the_runs_page_compares_it(
    served, tmp_path, monkeypatch
):
    from browser import (
        ARTIFACTS,
        LAST_CHIP_TEXT,
        STORY,
        answer_text,
        chip_counts_until_done,
        chromium,
        dashboard_server,
        generate,
        shown_errors,
        wait_until_finished,
    )
    from streamlit.testing.v1 import AppTest

    endpoint, model, _log = served
    prompt = "What is the capital of France?"
    ARTIFACTS.mkdir(exist_ok=True)
    data = tmp_path / "data"
    redraw = {"INFERENCE_KITCHEN_TEXT_REDRAW_SECONDS": "0.2"}  # a fast server streams 64 tokens in about a second
    with dashboard_server(data, ARTIFACTS / "server-remote.log", redraw) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.goto(url)
        page.get_by_text("a server", exact=True).click()
        address = page.get_by_role("textbox", name="Server address")
        address.fill(endpoint)
        address.press("Tab")
        page.get_by_text(f"Cooking on the server's {model}").wait_for(timeout=30_000)  # listed, picked, named
        generate(page, STORY, max_new_tokens=64)  # long enough to be seen arriving, even from a fast server
        counts = chip_counts_until_done(page, poll_ms=50, max_polls=6000)
        partial = {c for c in counts if 0 < c < 64}
        assert len(partial) >= 2, counts  # chips appeared a few at a time: it streamed in, not one final dump
        assert len(wait_until_finished(page)) > 0 and page.locator(".ik-chip").count() == 64
        generate(page, prompt, max_new_tokens=24)  # a short answer the model ends itself; the story had no end chip
        page.wait_for_function(f"() => {LAST_CHIP_TEXT} === '⏹ end'", timeout=60_000)
        answer = wait_until_finished(page)
        assert "Paris" in answer and answer.endswith("⏹ end")  # the end token the server counted, shown as ours is
        assert page.get_by_text("Times measured at the client").count() == 1
        page.locator("[data-testid=stPlotlyChart]").nth(2).wait_for(timeout=30_000)
        assert page.locator("[data-testid=stPlotlyChart]").count() == 3  # budget, latency, tokens over time
        assert page.get_by_text("does not tell a client how big its KV cache is").count() == 1
        assert shown_errors(page) == []
        page.screenshot(path=str(ARTIFACTS / "live-page-remote.png"), full_page=True)
        page.get_by_text("this machine", exact=True).click()  # the same prompt on this machine's model
        page.get_by_label("Prompt").wait_for()
        page.locator("[data-testid=stProgress]").first.wait_for(state="detached", timeout=180_000)
        generate(page, prompt, max_new_tokens=24)
        page.get_by_text("Times measured at the client").wait_for(state="detached", timeout=60_000)  # the new run
        wait_until_finished(page)
        assert "Paris" in answer_text(page) and shown_errors(page) == []
        page.close()
    monkeypatch.setenv("INFERENCE_KITCHEN_DATA", str(data))
    served_runs = list((data / "remote").glob("*.json"))  # the story and the question
    remote = [f"remote/{path.name}" for path in served_runs if load_trace(path).prompt["text"] == prompt]
    local = [f"traces/{path.name}" for path in (data / "traces").glob("*.json")]
    assert len(served_runs) == 2 and len(remote) == 1 and len(local) == 1
    at = AppTest.from_file("../pages/runs.py", default_timeout=60).run()
    at.multiselect(key="runs_selected").set_value([*local, *remote]).run()
    assert not at.exception
    names = at.text[-1].value
    assert "this machine's model" in names and "the server 127.0.0.1:" in names
    table = at.dataframe[-1].value
    first = table[table["figure"] == "time to first token"]
    assert first["run 2 ÷ run 1"].item().endswith("x")  # the server's first token against ours, as a ratio


def test_a_load_sweep_against_the_real_server_finishes_and_its_rows_validate(served):
    from engine.experiments import load_result, saved_results

    endpoint, model, _log = served
    done = engine_cli("experiment", "server-load", "--endpoint", endpoint, "--server-model", model,
                      "--concurrency", "1,2,4", "--max-new-tokens", "16", timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = load_result(saved_results("server-load")[0])  # the result contract, checked whole
    assert [row["concurrency"] for row in result.rows] == [1, 2, 4]
    assert all(row["failed"] == 0 and row["tokens"] >= row["concurrency"] for row in result.rows)
    assert all(row["ttft_p50_ms"] > 0 and row["itl_p50_ms"] > 0 for row in result.rows)
    assert result.details["host"] == endpoint.split("/")[2] and result.finding in done.stdout
    assert result.details["prompt_tokens"] > 0  # from the server's usage: the Costs page prices the busiest level
    assert costs.throughput_from_server_load(result)[0].concurrent_requests in (1, 2, 4)
