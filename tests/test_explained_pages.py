"""The Restaurant and Costs pages under AppTest: no results at all, with results, inputs that change outputs."""

from __future__ import annotations

import pytest
from conftest import SMALL, make_tiny_model, run_until
from streamlit.testing.v1 import AppTest

from engine import GenerationSettings, run_trace, save_trace
from engine.experiments import run_experiment, save_result
from engine.experiments.result import default_result_path
from engine.trace import default_trace_path

pytestmark = pytest.mark.usefixtures("fresh_kitchen")


@pytest.fixture
def saved_everything():
    """A trace and every experiment's result, measured on the tiny model and saved where the pages look."""
    tiny = make_tiny_model(context=1024)
    save_trace(
        run_trace(tiny, "soup of the day", settings=GenerationSettings(max_new_tokens=12, stop_at_eos=False)),
        default_trace_path(),
    )
    return {name: save_result(run_experiment(tiny, name, SMALL[name]), default_result_path(name)) for name in SMALL}


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_the_restaurant_with_nothing_measured_offers_to_run_it():
    at = AppTest.from_file("../pages/restaurant.py", default_timeout=30).run()
    assert not at.exception
    assert (
        at.button(key="restaurant_train_run").label == "Run experiment"
    )  # training vs inference, measured on the spot
    assert at.button(key="restaurant_cook").label == "Run it: cook one answer now"
    text = " ".join(m.value for m in at.markdown)
    assert "should be measured, not claimed" in text and "No answer has been cooked" in text


def test_the_restaurant_puts_measured_numbers_beside_each_claim(saved_everything):
    at = AppTest.from_file("../pages/restaurant.py", default_timeout=30).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "One training step on 32 tokens" in text and "peaked at" in text
    assert "prompt tokens per second for a 256-token order" in text
    assert "Your latest answer took" in text and "of that budget" in text
    assert "training step: peak memory" in metrics(at)


@pytest.mark.slow
def test_the_restaurant_counts_the_visitors_own_words_with_the_real_tokenizer():
    at = AppTest.from_file("../pages/restaurant.py", default_timeout=30).run()
    run_until(at, lambda a: "tokens in your text" in metrics(a), timeout_s=120, what="the tokenizer")
    at.text_area(key="restaurant_text").set_value(
        "The chef reads the whole order, then cooks one dish at a time."
    ).run()
    numbers = metrics(at)
    assert numbers["tokens in your text"] == "15" and 0.5 < float(numbers["words per token, measured"]) < 1.2


def test_the_costs_page_works_with_no_results_at_all():
    at = AppTest.from_file("../pages/costs.py", default_timeout=30).run()
    assert not at.exception
    assert at.radio(key="costs_throughput_source").options == ["typed"]
    numbers = metrics(at)
    assert numbers["cost per million output tokens"] == "$0.4630"  # $0.05/h at the typed 30 tokens/s
    assert numbers["tokens/s per watt = tokens per joule (estimate)"] == "0.462"  # 30 tokens/s / 65 W
    assert len(at.get("plotly_chart")) == 2  # prices across hardware at the typed rate, and the article's projection


def test_costs_respond_to_the_workload_and_the_hardware(saved_everything):
    at = AppTest.from_file("../pages/costs.py", default_timeout=30).run()
    assert not at.exception
    assert at.radio(key="costs_throughput_source").options == [
        "your latest run (batch 1)",
        "the batching experiment",
        "typed",
    ]
    at.radio(key="costs_throughput_source").set_value("typed").run()
    at.number_input(key="costs_requests").set_value(100_000).run()
    before = metrics(at)["machines needed"]
    at.number_input(key="costs_requests").set_value(1_000_000).run()
    assert int(metrics(at)["machines needed"]) > int(before)
    at.selectbox(key="costs_hardware").set_value("Datacenter GPU (NVIDIA H100 SXM)").run()
    assert not at.exception
    assert metrics(at)["cost per million output tokens"] == "$24.91"  # $2.69/h at the typed 30 tokens/s
    assert len(at.get("plotly_chart")) == 3  # across hardware, across batch sizes, the article's projection
