"""The Restaurant and Costs pages under AppTest: no results at all, with results, inputs that change outputs."""

from __future__ import annotations

import pytest
from conftest import SMALL, make_tiny_model, run_until
from streamlit.testing.v1 import AppTest

from engine import GenerationSettings, run_trace, save_trace
from engine.experiments import run_experiment, save_result
from engine.experiments.result import default_result_path
from engine.trace import default_trace_path
from engine.units import fmt_rate

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
    assert "should be measured, not claimed" in text
    assert "No answer has been cooked" in text


def test_the_restaurant_puts_measured_numbers_beside_each_claim(saved_everything):
    at = AppTest.from_file("../pages/restaurant.py", default_timeout=30).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "One training step on 32 tokens" in text
    assert "peaked at" in text
    assert "prompt tokens per second for a 256-token order" in text
    assert "Your latest answer took" in text
    assert "of that budget" in text
    assert "training step: peak memory" in metrics(at)


@pytest.mark.slow
def test_the_restaurant_counts_the_visitors_own_words_with_the_real_tokenizer():
    at = AppTest.from_file("../pages/restaurant.py", default_timeout=30).run()
    at.button(key="restaurant_load").click().run()  # nothing loads the model until the visitor asks
    run_until(at, lambda a: "tokens in your text" in metrics(a), timeout_s=120, what="the tokenizer")
    at.text_area(key="restaurant_text").set_value(
        "The chef reads the whole order, then cooks one dish at a time."
    ).run()
    numbers = metrics(at)
    assert numbers["tokens in your text"] == "15"
    assert 0.5 < float(numbers["words per token, measured"]) < 1.2


def test_the_costs_page_works_with_no_results_at_all():
    at = AppTest.from_file("../pages/costs.py", default_timeout=30).run()
    assert not at.exception
    assert at.radio(key="costs_throughput_source").options == ["typed"]
    numbers = metrics(at)
    assert numbers["cost per million output tokens"] == "$0.4630"  # $0.05/h at the typed 30 tokens/s
    assert numbers["tokens/J = tokens/s per W (estimate)"] == "0.462"  # 30 tokens/s / 65 W
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


def test_a_measured_rate_priced_on_other_hardware_is_labelled_a_scaled_estimate(saved_everything):
    from engine import costs
    from engine.experiments import load_result
    from engine.trace import latest_trace

    at = AppTest.from_file("../pages/costs.py", default_timeout=30).run()
    at.selectbox(key="costs_hardware").set_value("Datacenter GPU (NVIDIA H100 SXM)").run()
    assert not at.exception
    assert at.radio(key="costs_throughput_source").value == "your latest run (batch 1)"
    shown = at.info[0].value.replace("\\", "")  # the source is shown escaped (a model name is a file's text)
    # the same scaling the engine does, by hand: decode x (H100 bandwidth / this machine's measured bandwidth)
    roofline = load_result(saved_everything["roofline"])
    h100 = next(preset for preset in costs.load_presets() if preset.name == "Datacenter GPU (NVIDIA H100 SXM)")
    measured = latest_trace().summary.decode_tokens_per_s
    ratio = h100.bandwidth_bytes_per_s.value / roofline.details["bandwidth_bytes_per_s"]
    assert f"**{measured * ratio:,.1f}** decode tokens/s" in shown
    assert "estimate: measured: your run of" in shown
    assert f"scaled to Datacenter GPU (NVIDIA H100 SXM) by memory bandwidth ({ratio:,.1f}x)" in shown
    at.selectbox(key="costs_hardware").set_value("This machine").run()
    assert "estimate" not in at.info[0].value  # measured here: no scaling, no estimate
    assert f"**{measured:,.1f}** decode tokens/s" in at.info[0].value


def test_throughput_from_a_trace_is_its_summary_and_needs_two_tokens(tiny):
    from engine import costs

    trace = run_trace(tiny, "soup", settings=GenerationSettings(max_new_tokens=6, stop_at_eos=False))
    rate = costs.throughput_from_trace(trace)
    assert rate.decode_tokens_per_s == trace.summary.decode_tokens_per_s
    assert rate.prefill_tokens_per_s == trace.summary.prefill_tokens_per_s
    assert rate.concurrent_requests == 1
    assert rate.source.startswith("measured: your run of")
    one = run_trace(tiny, "soup", settings=GenerationSettings(max_new_tokens=1, stop_at_eos=False))
    assert costs.throughput_from_trace(one) is None  # a single token has no decode rate


def test_a_missed_target_never_prints_zero_machines_in_a_formula():
    at = AppTest.from_file("../pages/costs.py", default_timeout=30).run()
    at.radio(key="costs_throughput_source").set_value("typed").run()
    at.number_input(key="costs_latency").set_value(1.0).run()  # 250 tokens at 30 tokens/s: ~8 s, over 1 s
    assert not at.exception
    formulas = " ".join(element.proto.body for element in at.get("latex")) if at.get("latex") else ""
    assert "machines" not in formulas.lower()  # the sizing formula is not shown at all
    assert any("Machines: none" in m.value for m in at.markdown)
    at.number_input(key="costs_latency").set_value(600.0).run()
    formulas = " ".join(element.proto.body for element in at.get("latex"))
    assert "\\text{machines}" in formulas
    assert "right\\rceil = 0," not in formulas


def test_your_run_is_one_that_fits_the_lesson_and_the_page_says_which(tiny):
    from engine.hardware import describe_hardware, pick_device
    from engine.trace import lesson_misfits, lesson_trace

    cached = run_trace(tiny, "soup of the day", settings=GenerationSettings(max_new_tokens=12, stop_at_eos=False))
    save_trace(cached, default_trace_path())
    uncached = run_trace(
        tiny, "soup of the day", settings=GenerationSettings(max_new_tokens=12, stop_at_eos=False, kv_cache=False)
    )
    newest = save_trace(uncached, default_trace_path())  # saved last: the one "the latest run" used to quote
    hardware = describe_hardware(pick_device())
    assert lesson_misfits(uncached, hardware=hardware) == ["the KV cache was off"]
    assert lesson_misfits(cached, hardware=hardware) == []
    elsewhere = {**hardware, "cpu": "another CPU"}
    assert lesson_misfits(cached, hardware=elsewhere)[0].startswith("it was measured on another machine")
    chosen, _ = lesson_trace(hardware=hardware)
    assert chosen.settings["kv_cache"] is True

    at = AppTest.from_file("../pages/restaurant.py", default_timeout=30).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    decode = fmt_rate(cached.summary.decode_tokens_per_s, "").strip()
    assert f"**{decode}** tokens per second" in text  # the cache-on run's figure, not the newer cache-off one's
    assert any("fits the lesson" in c.value and "KV cache on, greedy" in c.value for c in at.caption)
    at.selectbox(key="restaurant_your_run").set_value(str(newest)).run()  # the visitor picks the other run
    assert any("does not fit the lesson: the KV cache was off" in w.value for w in at.warning)
