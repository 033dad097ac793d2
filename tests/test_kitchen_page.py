"""The Kitchen page under AppTest, on the tiny model: idle, then three tables cooked together, anonymously."""

from __future__ import annotations

import pytest
from conftest import html_of, run_until
from streamlit.testing.v1 import AppTest

from app.kitchen import GenerationJob, model_slot
from engine import GenerationSettings

pytestmark = pytest.mark.usefixtures("fresh_kitchen")

KITCHEN_PAGE = "../pages/kitchen.py"


def test_the_kitchen_page_shows_idle_then_the_tables_it_cooked_without_their_prompts(tiny_folder):
    at = AppTest.from_file(KITCHEN_PAGE, default_timeout=60)
    at.session_state["sidebar_model"] = str(tiny_folder)
    run_until(at, lambda a: len(a.metric) > 0, timeout_s=120, what="the tiny model to load")
    assert not at.exception
    assert any("idle for the last minute" in info.value for info in at.info)
    slot = model_slot(str(tiny_folder), "cpu", "float32")
    secret = "my secret question about soup"
    jobs = [
        GenerationJob(prompt=f"{secret} {index}", settings=GenerationSettings(max_new_tokens=40)) for index in range(3)
    ]
    for job in jobs:
        slot.submit(job)
    run_until(at, lambda a: not any(job.active for job in jobs), timeout_s=60, what="three orders")
    at.run()
    assert not at.exception
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Tables in the last minute"] == "3"
    assert float(metrics["Tokens/s, all tables"].replace(",", "")) > 0
    texts = [html_of(at), *(m.value for m in at.markdown), *(c.value for c in at.caption)]
    page = " ".join([*texts, *(str(chart.proto.spec) for chart in at.get("plotly_chart"))])
    assert "One cook, many tables" in page  # they shared steps, so the crowded sentence
    assert len(at.get("plotly_chart")) == 2
    for job in jobs:
        assert f"table {job.table}" in page
    assert secret not in page and "soup" not in page  # no visitor's words reach the kitchen view
