"""The Runs page under AppTest: empty, listing, opening, labelling, deleting with confirmation, replaying, comparing."""

from __future__ import annotations

import json
import time

import pytest
from conftest import SMALL, make_tiny_model
from streamlit.testing.v1 import AppTest

from engine import GenerationSettings, run_trace, save_trace
from engine.experiments import run_experiment, save_result
from engine.experiments.result import default_result_path
from engine.store import RunStore
from engine.trace import default_trace_path

PAGE = "../pages/runs.py"


@pytest.fixture
def saved():
    """Two traces and one result in the store; returns their relative paths (trace, trace, result)."""
    tiny = make_tiny_model(context=512)
    paths = [
        save_trace(
            run_trace(tiny, "soup", settings=GenerationSettings(max_new_tokens=10, stop_at_eos=False)),
            default_trace_path(),
        ),
        save_trace(
            run_trace(tiny, "bread", settings=GenerationSettings(max_new_tokens=16, stop_at_eos=False)),
            default_trace_path(),
        ),
        save_result(run_experiment(tiny, "batch", SMALL["batch"]), default_result_path("batch")),
    ]
    return [f"{path.parent.name}/{path.name}" for path in paths]


def page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=30).run()


def test_an_empty_store_still_offers_the_reference_traces():
    at = page()
    assert not at.exception
    options = at.multiselect(key="runs_selected").options
    assert options
    assert all("reference:" in option for option in options)


def test_opening_a_trace_shows_it_like_the_live_page_with_its_downloads(saved):
    at = page()
    at.multiselect(key="runs_selected").set_value([saved[0]]).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 5
    assert [b.label for b in at.get("download_button")] == [
        "Download JSON",
        "Download tokens (CSV)",
        "Download HTML report",
    ]
    assert "Recorded: 10 tokens." in "".join(h.proto.body for h in at.get("html"))


def test_labels_stick_and_a_delete_needs_confirming(saved):
    at = page()
    at.multiselect(key="runs_selected").set_value([saved[1]]).run()
    at.text_input(key=f"runs_label_{saved[1]}").set_value("float32 baseline").run()
    at.button(key="runs_save_label").click().run()
    assert RunStore().labels()[saved[1]] == "float32 baseline"
    at.button(key="runs_delete").click().run()
    assert any("for good" in w.value for w in at.warning)
    assert (RunStore().root / saved[1]).exists()
    at.button(key="runs_delete_no").click().run()
    assert (RunStore().root / saved[1]).exists()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception
    assert not (RunStore().root / saved[1]).exists()
    assert saved[1] not in at.multiselect(key="runs_selected").options


def test_an_experiment_result_opens_with_its_finding(saved):
    at = page()
    at.multiselect(key="runs_selected").set_value([saved[2]]).run()
    assert not at.exception
    assert at.success[0].value.startswith("**Finding.**")


def test_a_replay_of_the_reference_trace_fills_in_over_time():
    from engine.store import REFERENCE_DIR

    reference = f"reference/{sorted(REFERENCE_DIR.glob('*.json'))[0].name}"
    at = page()
    at.multiselect(key="runs_selected").set_value([reference]).run()
    at.radio(key="runs_replay_speed").set_value(4.0).run()
    at.button(key="runs_replay").click().run()
    assert at.session_state["runs_replaying"]["clock"].speed == 4.0
    shown, deadline = [], time.monotonic() + 20  # the 4.6 s recording takes ~1.2 s at x4
    while "runs_replaying" in at.session_state and time.monotonic() < deadline:
        time.sleep(0.15)
        at.run()
        assert not at.exception
        shown.append("".join(h.proto.body for h in at.get("html")).count("ik-chip "))
    assert "runs_replaying" not in at.session_state  # it finished by itself
    partial = [count for count in shown if 0 < count < 96]
    assert len(set(partial)) >= 2, shown  # tokens appeared progressively, not all at once
    assert "Recorded: 96 tokens." in "".join(h.proto.body for h in at.get("html"))


def test_a_new_speed_mid_replay_goes_on_from_where_the_replay_is():
    """Seen: picking x4 during a x0.5 replay changed the control but not the replay."""
    from engine.store import REFERENCE_DIR

    reference = f"reference/{sorted(REFERENCE_DIR.glob('*.json'))[0].name}"
    at = page()
    at.multiselect(key="runs_selected").set_value([reference]).run()
    at.radio(key="runs_replay_speed").set_value(0.5).run()
    before = time.monotonic()
    at.button(key="runs_replay").click().run()
    time.sleep(1.0)
    at.radio(key="runs_replay_speed").set_value(4.0).run()
    after = time.monotonic()
    clock = at.session_state["runs_replaying"]["clock"]
    assert clock.speed == 4.0
    # it went on from where x0.5 had got to: at least the 1 s slept, at most the whole time the test took, at x0.5
    # (a restart would read 0, keeping x0.5 would leave the speed, a jump at x4 would read up to 8x more)
    assert 0.5 * 1000 * 1.0 <= clock.from_ms <= 0.5 * 1000 * (after - before), clock
    assert "Replaying at x4" in "".join(h.proto.body for h in at.get("html"))


def test_comparing_two_traces_overlays_them_with_ratios(saved):
    at = page()
    at.multiselect(key="runs_selected").set_value(saved[:2]).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 5
    table = at.dataframe[-1].value
    assert "run 2 ÷ run 1" in table.columns
    assert "new tokens" in set(table["figure"])


def test_a_lone_run_and_a_crowded_one_compare_with_their_batch_sizes_beside_the_latency():
    from engine import prepare_request
    from engine.run import build_trace
    from engine.serving import Kitchen, Order

    tiny = make_tiny_model(context=512)
    settings = GenerationSettings(max_new_tokens=12, stop_at_eos=False)
    lone = save_trace(run_trace(tiny, "soup", settings=settings), default_trace_path())
    kitchen, records = Kitchen(tiny), {name: [] for name in ("soup", "bread", "cake")}
    requests = {name: prepare_request(tiny, name, settings=settings) for name in records}
    for index, (name, request) in enumerate(requests.items()):
        kitchen.add(Order(table=index, request=request, on_record=records[name].append))
    while not kitchen.idle:
        kitchen.step()
    crowded = save_trace(build_trace(tiny, requests["soup"], records["soup"]), default_trace_path())
    at = page()
    at.multiselect(key="runs_selected").set_value([f"{p.parent.name}/{p.name}" for p in (lone, crowded)]).run()
    assert not at.exception
    batch_chart = next(c for c in at.get("plotly_chart") if "requests in the step" in c.proto.spec)
    lone_line, crowded_line = json.loads(batch_chart.proto.spec)["data"]
    assert set(lone_line["y"]) == {1} and set(crowded_line["y"]) == {3}  # cooked alone, and with two others
