"""The experiment pages under AppTest: empty, with saved results (good and corrupt), and one real run."""

from __future__ import annotations

import pytest
from conftest import SMALL, make_tiny_model, run_until
from streamlit.testing.v1 import AppTest

from app.text import literal
from engine.experiments import run_experiment, save_result
from engine.experiments.result import default_result_path

pytestmark = pytest.mark.usefixtures("fresh_kitchen")

PAGES = {  # page file -> (experiment, session-state key prefix)
    "prefill": ("prefill", "prefill"),
    "kv_cache": ("kv-cache", "kv_cache"),
    "batch": ("batch", "batch"),
    "roofline": ("roofline", "roofline"),
    "train_vs_infer": ("train-vs-infer", "train_vs_infer"),
    "speed": ("speed", "speed"),
}


@pytest.fixture(scope="module")
def tiny_results():
    """A result of every experiment, measured on the tiny model."""
    tiny = make_tiny_model(context=1024)
    return {name: run_experiment(tiny, name, SMALL[name]) for name in SMALL}


def page_test(page: str) -> AppTest:
    return AppTest.from_file(f"../pages/{page}.py", default_timeout=30)


@pytest.mark.parametrize("page", list(PAGES))
def test_each_page_without_results_invites_a_run(page):
    at = page_test(page).run()
    assert not at.exception
    assert any("No result yet" in info.value for info in at.info)
    assert at.button(key=f"{PAGES[page][1]}_run").label == "Run experiment"
    assert not at.get("plotly_chart")


@pytest.mark.parametrize("page", list(PAGES))
def test_each_page_draws_a_saved_result_with_its_finding(page, tiny_results):
    name, _ = PAGES[page]
    result = tiny_results[name]
    save_result(result, default_result_path(name))
    at = page_test(page).run()
    assert not at.exception
    assert any(literal(result.finding) in success.value for success in at.success)  # shown as typed
    assert len(at.get("plotly_chart")) >= 2
    assert [b.label for b in at.get("download_button")] == ["Download result (JSON)"]


def stopped_copy(result, *, keep: int):
    """The result as a run stopped after `keep` rows would have saved it."""
    from dataclasses import replace

    return replace(
        result,
        rows=result.rows[:keep],
        finding=f"Stopped after {keep} measured points: they are kept below, but a stopped run draws no finding.",
        details={"stopped": "the experiment was stopped (test)"},
    )


@pytest.mark.parametrize("page", ["prefill", "kv_cache", "batch", "roofline"])
def test_a_stopped_run_shows_its_points_marked_stopped_and_teaches_nothing(page, tiny_results):
    from app.experiment_view import latest_result

    name, _ = PAGES[page]
    whole = save_result(tiny_results[name], default_result_path(name))
    save_result(stopped_copy(tiny_results[name], keep=1), default_result_path(name))  # the newest
    at = page_test(page).run()
    assert not at.exception
    assert any("stopped part-way" in warning.value for warning in at.warning)
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 1  # its one point, as measured
    assert not at.get("plotly_chart")  # no chart or lesson drawn from half a run
    taught = latest_result(name)  # the Restaurant and Costs pages' source: the whole run, not the newer stopped one
    assert taught.stopped is None and len(taught.rows) == len(tiny_results[name].rows) > 1
    assert whole.exists()


def test_a_corrupt_saved_file_is_reported_and_skipped(tiny_results):
    good = save_result(tiny_results["batch"], default_result_path("batch"))
    broken = default_result_path("batch")
    broken.write_text('{"schema_version": 1, "kind": "experiment", "rows": [')  # truncated
    at = page_test("batch").run()
    assert not at.exception
    assert any("could not be read" in expander.label for expander in at.expander)
    assert broken.name in " ".join(m.value for m in at.markdown)
    assert at.selectbox(key="batch_saved").value == str(good)
    assert any(literal(tiny_results["batch"].finding) in s.value for s in at.success)


def test_options_that_cannot_run_are_refused_on_the_page():
    at = page_test("prefill").run()
    at.multiselect(key="prefill_lengths").set_value([])
    at.button(key="prefill_run").click().run()
    assert not at.exception
    assert any("cannot run" in w.value and "prompt lengths" in w.value for w in at.warning)
    assert "prefill_job" not in at.session_state


@pytest.mark.slow
def test_a_presenter_runs_an_experiment_and_gets_a_finding():
    at = page_test("batch").run()
    at.multiselect(key="batch_sizes").set_value([1, 2])
    at.number_input(key="batch_decode_tokens").set_value(4)
    at.number_input(key="batch_prompt_tokens").set_value(8)
    at.button(key="batch_run").click().run()
    assert not at.exception
    assert at.button(key="batch_run").disabled
    assert not at.button(key="batch_stop").disabled
    run_until(
        at,
        lambda a: a.session_state["batch_job"].state not in ("queued", "running"),
        timeout_s=180,
        what="the experiment",
    )
    job = at.session_state["batch_job"]
    assert job.state == "done", job.error
    assert job.saved_to.is_file()
    assert at.selectbox(key="batch_saved").value == str(job.saved_to)
    assert any(literal(job.result.finding) in s.value for s in at.success)
    assert "SmolLM2" in job.result.finding + job.result.model["name"]
    assert [row["batch_size"] for row in job.result.rows] == [1, 2]


def test_presentation_mode_folds_the_settings_away_and_enlarges_the_charts(tiny_results):
    import json as json_module

    save_result(tiny_results["batch"], default_result_path("batch"))
    normal = page_test("batch").run()
    presenting = page_test("batch")
    presenting.session_state["sidebar_presentation"] = True
    presenting.run()
    assert not presenting.exception
    assert "Options" in [e.label for e in presenting.expander]
    assert "Options" not in [e.label for e in normal.expander]
    heights = [
        json_module.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["height"] for at in (normal, presenting)
    ]
    assert heights[1] > 1.4 * heights[0]


def test_in_a_hosted_kitchen_only_the_presenter_is_offered_the_compiled_paths(hosted):
    from app.visitors import PRESENTER_KEY, VISITOR_KEY

    visitor = page_test("speed")
    visitor.session_state[VISITOR_KEY] = "v-speed000000000000000000"
    visitor.run()
    assert not visitor.exception
    assert visitor.multiselect[0].options == ["eager"] and visitor.multiselect[0].value == ["eager"]
    assert any("only the presenter may prepare the compiled paths" in caption.value for caption in visitor.caption)
    presenter = page_test("speed")
    presenter.session_state[VISITOR_KEY], presenter.session_state[PRESENTER_KEY] = "v-presenter00000000000000", True
    presenter.run()
    assert presenter.multiselect[0].options == ["eager", "compiled", "compiled-int8", "compiled-bf16"]
    # the memory wall offers the same compiled paths to the presenter only
    visitor, presenter = page_test("roofline"), page_test("roofline")
    visitor.session_state[VISITOR_KEY] = "v-roofline0000000000000000"
    presenter.session_state[VISITOR_KEY], presenter.session_state[PRESENTER_KEY] = "v-presenter00000000000000", True
    visitor.run(), presenter.run()
    assert not visitor.exception and not presenter.exception
    assert visitor.multiselect[0].options == [] and visitor.multiselect[0].disabled
    assert presenter.multiselect[0].options == ["compiled", "compiled-int8", "compiled-bf16"]


def test_in_a_hosted_kitchen_only_the_presenter_may_pick_a_compiled_path_on_the_live_page(hosted, fresh_kitchen):
    from app.visitors import PRESENTER_KEY, VISITOR_KEY

    visitor, presenter = page_test("live"), page_test("live")
    visitor.session_state[VISITOR_KEY] = "v-live00000000000000000000"
    presenter.session_state[VISITOR_KEY], presenter.session_state[PRESENTER_KEY] = "v-presenter00000000000000", True
    visitor.run(), presenter.run()
    assert not visitor.exception and not presenter.exception
    assert visitor.selectbox(key="live_path").options == ["eager"]
    assert any("only the presenter may prepare the compiled" in caption.value for caption in visitor.caption)
    assert presenter.selectbox(key="live_path").options == ["eager", "compiled", "compiled-int8", "compiled-bf16"]
    assert presenter.selectbox(key="live_path").value == "eager"  # instant, and every detail: the default


def test_a_run_on_a_compiled_path_says_so_under_its_answer(tiny):
    from dataclasses import replace

    from app.live_view import path_caption
    from engine import GenerationSettings, run_trace

    eager = run_trace(tiny, "soup", settings=GenerationSettings(max_new_tokens=2))
    assert path_caption(eager) is None  # the batched eager kitchen: nothing to add
    compiled = {"name": "compiled-bf16", "dtype": "float32", "weights": "bfloat16", "prepare_s": 14.4, "cache": "warm",
                "max_len": 512, "options": {}}  # fmt: skip
    assert path_caption(replace(eager, path=compiled)) == (
        "Decoded on a compiled path: compiled-bf16 (float32 arithmetic, weights bfloat16), prepared in 14.4 s "
        "(warm compile cache); it had the model to itself, not batched."
    )
