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


def test_in_a_hosted_kitchen_the_presenter_stops_anyones_order_and_a_visitor_cannot(hosted, tiny_folder):
    from app.kitchen import ExperimentJob
    from app.visitors import PRESENTER_KEY, VISITOR_KEY
    from engine.experiments.energy import EnergyOptions

    slot = model_slot(str(tiny_folder), "cpu", "float32")
    secret = "another visitor's long question"  # an order that cooks for minutes: 10,000 timed requests
    order = ExperimentJob(experiment="energy", options=EnergyOptions(prompt=secret, new_tokens=8, runs=10_000))
    slot.submit(order)
    visitor = AppTest.from_file(KITCHEN_PAGE, default_timeout=60)
    visitor.session_state[VISITOR_KEY] = "v-bert0000000000000000000"
    run_until(visitor, lambda a: order.state == "running" and len(a.metric) > 0, timeout_s=120, what="the order")
    assert not [button for button in visitor.button if button.key.startswith("kitchen_stop_")]
    presenter = AppTest.from_file(KITCHEN_PAGE, default_timeout=60)
    presenter.session_state[VISITOR_KEY], presenter.session_state[PRESENTER_KEY] = "v-presenter00000000000000", True
    presenter.run()
    assert not presenter.exception
    listed = " ".join(text.value for text in presenter.text)
    assert "the energy experiment · running" in listed and secret not in listed
    (stop,) = [button for button in presenter.button if button.key.startswith("kitchen_stop_")]
    stop.click().run()
    run_until(presenter, lambda a: not order.active, timeout_s=30, what="the stop")
    assert order.state == "stopped"
