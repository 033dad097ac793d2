"""The dashboard under Streamlit's AppTest: pages run, generate, and handle bad input without exceptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import html_of, run_until
from streamlit.testing.v1 import AppTest

from engine import Trace

pytestmark = pytest.mark.usefixtures("fresh_kitchen")

MAIN = "../app/main.py"  # AppTest resolves paths relative to this test file
LIVE_PAGE = "../pages/live.py"
LOAD_TIMEOUT_S = 120  # the first load converts the bundled GGUF (~30 s on 2 cores); later loads take seconds


def model_ready(at: AppTest) -> bool:
    """The live page with its model loaded: the prompt box is there from the start, the loading bar goes."""
    return len(at.text_area) > 0 and not at.get("progress")


def loaded_app(path: str = MAIN) -> AppTest:
    at = AppTest.from_file(path, default_timeout=60)
    return run_until(at, model_ready, timeout_s=LOAD_TIMEOUT_S, what="the model to load")


@pytest.mark.slow
def test_live_page_generates_a_real_answer():
    at = loaded_app()
    assert at.text_area(key="live_prompt").label == "Prompt"
    assert any("Model threads" in m.value for m in at.sidebar.markdown)
    at.text_area(key="live_prompt").set_value("What is the capital of France?")
    at.button(key="live_generate").click()
    run_until(at, lambda a: "✅ Done" in html_of(a), timeout_s=60, what="the answer")
    page = html_of(at)
    assert "Paris" in page
    assert "ik-chip ik-prefill" in page
    assert "ik-tip" in page  # chips with popups
    for label in (
        "time to first token",
        "inter-token p50",
        "inter-token p90",
        "decode speed",
        "KV bytes per token",
        "total time",
        "10-second budget used",
    ):
        assert label in page
    assert len(at.get("plotly_chart")) == 5
    assert [b.label for b in at.get("download_button")] == ["Download trace (JSON)", "Download tokens (CSV)"]
    job = at.session_state["live_job"]
    assert isinstance(job.trace, Trace)
    assert job.saved_to is not None
    assert Path(job.saved_to).is_file()
    assert json.loads(Path(job.saved_to).read_text())["events"][0]["phase"] == "prefill"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["tokens in your text"] == "7"
    assert float(metrics["words per token, measured"]) > 0


@pytest.mark.slow
def test_an_empty_prompt_is_refused_before_it_reaches_the_kitchen():
    at = loaded_app()
    at.text_area(key="live_prompt").set_value("   ")
    at.button(key="live_generate").click().run()
    assert not at.exception
    assert any("prompt is empty" in w.value for w in at.warning)
    assert "live_job" not in at.session_state


def test_a_model_that_cannot_load_shows_a_readable_error():
    at = AppTest.from_file(MAIN, default_timeout=30)
    at.session_state["sidebar_model"] = "/no/such/model/folder"  # typed before the first run: nothing real loads
    run_until(at, lambda a: len(a.error) > 0, timeout_s=60, what="the load error")
    assert "there is no folder at that path" in at.error[0].value
    assert [b.label for b in at.button] == ["Try loading again"]


@pytest.mark.slow
def test_the_live_page_runs_on_its_own():
    at = loaded_app(LIVE_PAGE)
    assert at.title[0].value.endswith("Live inference")
    assert at.button(key="live_generate").label == "Generate"
