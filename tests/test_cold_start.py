"""Cold start: from starting the server (as `make run` does) to a visitor's first token, in a real browser."""

from __future__ import annotations

import contextlib
import time

import psutil
import pytest
from browser import ARTIFACTS, chromium, dashboard_server, generate, yield_the_cpu_to_the_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Measured here (2 cores, model copy cached, this test's Chromium lowered): the first token 8.0-10.5 s after the
# start (median ~9 s; the goal: 10 s), the prompt box after 5.7-7.5 s; the worker's model alone is ready
# after 7.5-9.5 s (its torch and transformers imports). With the server importing torch and transformers for its
# own first page it was 10.0-11.8 s (10.9-12.7 s before this test lowered its Chromium properly), and that is what
# this test guards against: directly (no torch in the server at the first token) and by the time, bounded above
# the measured spread. Before the early start (the worker began loading when the first page ran) the prompt box
# alone took 16-18 s.
FIRST_TOKEN_WITHIN_S = 12.0
WORKER_STARTED_WITHIN_S = 1.5  # app.launch starts it before Streamlit is even imported


def server_has_torch() -> bool:
    """Whether the dashboard's server process (below this test) has torch's library loaded."""
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "app.launch" in process.cmdline():
                return any("libtorch" in region.path for region in process.memory_maps())
    raise AssertionError("no dashboard server found")


def model_workers() -> list[psutil.Process]:
    """The model worker processes below this test."""
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "engine.worker" in process.cmdline():
                found.append(process)
    return found


def test_a_visitor_gets_a_first_token_soon_after_make_run(tmp_path, real):
    del real  # only so the converted default model is cached before the clock starts, as on a second `make run`
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:  # the visitor's browser is already open; the server is not
        yield_the_cpu_to_the_dashboard()
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        started_wall, started = time.time(), time.monotonic()
        with dashboard_server(tmp_path / "data", ARTIFACTS / "cold-start-server.log", poll_s=0.05) as url:
            workers = model_workers()
            assert len(workers) == 1, "the default model's worker should be loading before anyone visits"
            worker_started_s = workers[0].create_time() - started_wall
            page.goto(url)
            page.get_by_label("Prompt").wait_for(timeout=60_000)
            prompt_ready_s = time.monotonic() - started
            generate(page, "What is the capital of France?", max_new_tokens=8, settle_ms=0)
            page.locator(".ik-chip").first.wait_for(timeout=60_000)
            first_token_s = time.monotonic() - started
            torch_in_server = server_has_torch()  # its imports would have taken a core from the model's loading
            print(
                f"cold start: worker started after {worker_started_s:.2f} s, prompt box after {prompt_ready_s:.1f} s, "
                f"first token after {first_token_s:.1f} s"
            )
            page.get_by_text("✅ Done").wait_for(timeout=60_000)
            assert "Paris" in page.content()
            assert [worker.pid for worker in model_workers()] == [workers[0].pid]  # the page adopted it
        page.close()
    assert worker_started_s < WORKER_STARTED_WITHIN_S
    assert not torch_in_server
    assert first_token_s < FIRST_TOKEN_WITHIN_S, f"first token {first_token_s:.1f} s after the server started"
