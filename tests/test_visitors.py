"""A hosted kitchen's visitors and presenter: each visitor's own space on the Runs page, what only the presenter
may do, the access code, the presenter password, an identity kept across a reload, and the caps that end a
request (seconds, prompt tokens) and limit imports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import host_kitchen, make_tiny_model, wait_for
from streamlit.testing.v1 import AppTest

from app import hosting
from app.visitors import PRESENTER_KEY, VISITOR_KEY, signed_token, visitor_from_token
from engine import GenerationSettings, run_trace, save_trace
from engine.store import RunStore
from engine.trace import default_trace_path

RUNS_PAGE = "../pages/runs.py"
SECRETS = {"kitchen": {"presenter_password": "chef's secret", "access_code": "soup-2026"}}
ANNE, BERT = "v-anne0000000000000000000", "v-bert0000000000000000000"


@pytest.fixture
def two_visitors_runs(hosted):
    """Anne's trace (a private prompt), Bert's trace, and one the presenter shared; their relative paths."""
    tiny = make_tiny_model(context=256)
    store, paths = RunStore(), {}
    for who, prompt in ((ANNE, "anne's private prompt"), (BERT, "bert asks"), ("", "the presenter's example")):
        saved = save_trace(
            run_trace(tiny, prompt, settings=GenerationSettings(max_new_tokens=3, stop_at_eos=False)),
            default_trace_path(),
        )
        relative = f"traces/{saved.name}"
        if who:
            store.set_owner(relative, who)
        paths[who or "presenter"] = relative
    store.set_shared(paths["presenter"], True)
    return paths


def runs_page(*, visitor: str, presenter: bool = False, secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file(RUNS_PAGE, default_timeout=30)
    at.session_state[VISITOR_KEY] = visitor
    at.session_state[PRESENTER_KEY] = presenter
    at.secrets.update(secrets or SECRETS)
    return at.run()


def is_presenter(at: AppTest) -> bool:
    return PRESENTER_KEY in at.session_state and at.session_state[PRESENTER_KEY] is True


def test_a_visitor_sees_their_own_runs_and_shared_ones_never_another_visitors_prompt(two_visitors_runs):
    at = runs_page(visitor=BERT)
    assert not at.exception
    options = at.multiselect(key="runs_selected").options
    assert any("bert asks" in option for option in options)
    assert any("the presenter's example" in option for option in options)
    assert not any("anne" in option for option in options)
    shown = json.dumps([frame.value.to_dict() for frame in at.dataframe], default=str)
    assert "anne's private prompt" not in shown and "bert asks" in shown


def test_a_visitor_cannot_label_share_or_delete_even_their_own_run(two_visitors_runs):
    at = runs_page(visitor=BERT)
    at.multiselect(key="runs_selected").set_value([two_visitors_runs[BERT]]).run()
    assert not at.exception
    assert not [box for box in at.text_input if box.key.startswith("runs_label_")]
    assert not [button for button in at.button if button.key in ("runs_delete", "runs_save_label")]
    assert any("Only the presenter" in caption.value for caption in at.caption)


def test_a_visitor_cannot_open_another_visitors_run_by_forging_the_selection(two_visitors_runs):
    at = AppTest.from_file(RUNS_PAGE, default_timeout=30)
    at.session_state[VISITOR_KEY] = BERT
    at.session_state["runs_selected"] = [two_visitors_runs[ANNE]]  # what a forged session could hold
    at.run()
    assert not at.exception
    assert at.multiselect(key="runs_selected").value == []
    assert "anne's private prompt" not in "".join(text.value for text in at.text)


def test_the_presenter_sees_every_run_and_may_share_label_and_delete(two_visitors_runs):
    at = runs_page(visitor="v-presenter0000000000000", presenter=True)
    options = at.multiselect(key="runs_selected").options
    assert (
        sum(path.split("/")[-1].removesuffix(".json") in "".join(options) for path in two_visitors_runs.values()) == 3
    )
    anne = two_visitors_runs[ANNE]
    at.multiselect(key="runs_selected").set_value([anne]).run()
    at.toggle(key=f"runs_shared_{anne}").set_value(True).run()
    assert RunStore().access()[anne] == {"owner": ANNE, "shared": True}
    assert any("anne" in option for option in runs_page(visitor=BERT).multiselect(key="runs_selected").options)
    at.text_input(key=f"runs_label_{anne}").set_value("a good question").run()
    at.button(key="runs_save_label").click().run()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception
    assert not (RunStore().root / anne).exists()
    assert anne not in RunStore().access() and anne not in RunStore().labels()


def test_imports_belong_to_the_visitor_who_imported_and_stop_at_the_quota(tmp_path, monkeypatch, tiny_folder):
    host_kitchen(tmp_path, monkeypatch, tiny_folder, caps="imports_per_visitor = 1\n")
    try:
        tiny = make_tiny_model(context=256)
        trace = run_trace(tiny, "imported soup", settings=GenerationSettings(max_new_tokens=2, stop_at_eos=False))
        raw = json.dumps(trace.to_dict()).encode()
        store = RunStore()
        first = store.import_bytes(raw, filename="one.json", owner=ANNE)
        assert store.access()[first]["owner"] == ANNE and store.owned_imports(ANNE) == 1
        files_before = sorted(path.name for path in (store.root / "traces").iterdir())
        refused = hosting.import_room(imported_by_visitor=store.owned_imports(ANNE), store_bytes=0, file_bytes=len(raw))
        assert refused == "you have imported 1 files, this kitchen's limit per visitor"
        assert hosting.import_room(imported_by_visitor=store.owned_imports(BERT), store_bytes=0, file_bytes=1) is None
        quota = hosting.kitchen_config().caps.data_folder_mb * 1e6
        assert "of its 2,000 MB" in hosting.import_room(imported_by_visitor=0, store_bytes=int(quota), file_bytes=1)
        assert sorted(path.name for path in (store.root / "traces").iterdir()) == files_before
    finally:
        hosting.kitchen_config.cache_clear()


def test_a_visitor_cookie_is_signed_by_this_server_and_the_access_code(hosted, monkeypatch):
    import app.visitors as visitors

    token = signed_token(ANNE)
    assert visitor_from_token(token) == ANNE
    assert visitor_from_token(token.replace("anne", "bert")) is None  # another identity, the same signature
    assert visitor_from_token(f"{BERT}.{'0' * 32}") is None
    assert visitor_from_token("no-dot") is None and visitor_from_token(None) is None
    monkeypatch.setattr(visitors, "kitchen_secret", lambda name: "a new code" if name == "access_code" else None)
    assert visitor_from_token(token) is None  # a new access code: every visitor types it again


def test_the_access_code_keeps_the_site_closed_until_it_is_given(hosted):
    at = AppTest.from_file("../app/main.py", default_timeout=60)
    at.secrets.update(SECRETS)
    at.run()
    assert not at.exception
    assert [box.label for box in at.text_input] == ["Access code"]
    assert VISITOR_KEY not in at.session_state
    at.text_input[0].set_value("soup")
    at.button[0].click().run()  # a form sends its fields with its button
    assert any("not this workshop's access code" in error.value for error in at.error)
    assert VISITOR_KEY not in at.session_state
    at.text_input[0].set_value("soup-2026")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state[VISITOR_KEY].startswith("v-")
    assert [box for box in at.sidebar.selectbox if box.key == "sidebar_menu"]  # the dashboard is open


@pytest.mark.usefixtures("fresh_kitchen")
def test_only_the_presenter_password_unlocks_the_presenters_rights(hosted):
    at = AppTest.from_file("../app/main.py", default_timeout=60)
    at.secrets.update({"kitchen": {"presenter_password": "chef's secret"}})
    at.run()
    assert not at.exception and not is_presenter(at)
    (box,) = [box for box in at.sidebar.text_input if box.label == "Presenter password"]
    box.set_value("chef")
    [button for button in at.sidebar.button if button.label == "Unlock"][0].click().run()
    assert any("Wrong password" in error.value for error in at.sidebar.error)
    assert not is_presenter(at)
    [box for box in at.sidebar.text_input if box.label == "Presenter password"][0].set_value("chef's secret")
    [button for button in at.sidebar.button if button.label == "Unlock"][0].click().run()
    assert is_presenter(at)
    assert [box for box in at.sidebar.selectbox if box.key == "sidebar_model"]  # may pick (and load) any allowed model
    assert not at.exception


def test_local_mode_has_one_owner_who_may_do_everything():
    from app.visitors import may_load_models, may_manage_runs, visitor_id

    hosting.kitchen_config.cache_clear()
    assert not hosting.kitchen_config().hosted
    assert (visitor_id(), may_load_models(), may_manage_runs()) == ("", True, True)


@pytest.mark.usefixtures("fresh_kitchen")
def test_a_request_past_its_seconds_cap_ends_stopped_with_its_trace_saved(hosted, tiny_folder):
    from app.kitchen import GenerationJob, model_slot

    slot = model_slot(str(tiny_folder), "cpu", "float32")
    wait_for(lambda: slot.state == "ready", what="the tiny model")
    settings = GenerationSettings(max_new_tokens=32, stop_at_eos=False)
    capped = GenerationJob(prompt="a long order", settings=settings, owner=ANNE, seconds_cap=0.0)
    slot.submit(capped)
    wait_for(lambda: not capped.active, what="the capped order")
    assert capped.state == "stopped" and capped.out_of_time
    assert capped.trace is not None and capped.trace.finish_reason == "stopped"
    assert 1 <= len(capped.trace.events) < 32
    saved = RunStore().access()[f"traces/{capped.saved_to.name}"]
    assert saved == {"owner": ANNE, "shared": False}
    assert RunStore().open(f"traces/{capped.saved_to.name}").finish_reason == "stopped"
    uncapped = GenerationJob(prompt="a long order", settings=settings, owner=ANNE, seconds_cap=60.0)
    slot.submit(uncapped)
    wait_for(lambda: not uncapped.active, what="the uncapped order")
    assert uncapped.state == "done" and len(uncapped.trace.events) == 32


@pytest.mark.usefixtures("fresh_kitchen")
def test_a_prompt_past_the_token_cap_is_refused_with_its_count(hosted, tiny_folder):
    from app.kitchen import GenerationJob, model_slot

    slot = model_slot(str(tiny_folder), "cpu", "float32")
    wait_for(lambda: slot.state == "ready", what="the tiny model")
    job = GenerationJob(prompt="x" * 40, settings=GenerationSettings(max_new_tokens=2), prompt_tokens_cap=39)
    slot.submit(job)  # the tiny model's tokenizer is one token per byte: 40 tokens
    wait_for(lambda: not job.active, what="the refused order")
    assert job.state == "failed"
    assert job.error == "the prompt is 40 tokens; this kitchen takes at most 39 per request"
    assert job.saved_to is None


def test_two_visitors_marking_runs_at_once_lose_no_mark(hosted):
    import threading

    store = RunStore()
    (store.root / "traces").mkdir(parents=True)
    names = [f"traces/trace-2026{index:010d}.json" for index in range(400)]
    for name in names:
        (store.root / name).write_text("{}")

    def mark(half: list[str], owner: str) -> None:
        for name in half:
            store.set_owner(name, owner)

    threads = [
        threading.Thread(target=mark, args=(names[:200], ANNE)),
        threading.Thread(target=mark, args=(names[200:], BERT)),
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    access = store.access()
    assert [access[name]["owner"] for name in names] == [ANNE] * 200 + [BERT] * 200, time.monotonic() - started
    assert Path(store.access_path).is_file()


def test_an_experiment_run_by_one_visitor_is_not_shown_to_another(hosted):
    from dataclasses import replace

    from conftest import SMALL

    from engine.experiments import default_result_path, run_experiment, save_result

    options = replace(SMALL["kv-cache"], prompt="anne's secret experiment")
    saved = save_result(
        run_experiment(make_tiny_model(context=512), "kv-cache", options), default_result_path("kv-cache")
    )
    RunStore().set_owner(f"experiments/{saved.name}", ANNE)

    def page_text(visitor: str) -> str:
        at = AppTest.from_file("../pages/kv_cache.py", default_timeout=30)
        at.session_state[VISITOR_KEY] = visitor
        at.secrets.update(SECRETS)
        at.run()
        assert not at.exception
        return " ".join(str(element.value) for element in (*at.caption, *at.markdown, *at.success, *at.text))

    assert "anne's secret experiment" in page_text(ANNE)  # her own result, with the options she ran
    assert "anne's secret experiment" not in page_text(BERT)


class FakeUser(dict):
    """What st.user holds once Streamlit's OIDC login is configured (no identity provider is reachable here)."""

    def __init__(self, *, logged_in: bool, **claims: str) -> None:
        super().__init__(claims)
        self.is_logged_in = logged_in


@pytest.mark.usefixtures("fresh_kitchen")
def test_where_a_login_is_configured_the_visitor_is_who_st_user_says(hosted, monkeypatch):
    import hashlib

    import streamlit as st

    import app.visitors as visitors

    monkeypatch.setattr(visitors, "login_configured", lambda: True)
    monkeypatch.setattr(st, "user", FakeUser(logged_in=False))
    at = AppTest.from_file("../app/main.py", default_timeout=60).run()
    assert [button.label for button in at.button] == ["Log in"] and VISITOR_KEY not in at.session_state
    monkeypatch.setattr(st, "user", FakeUser(logged_in=True, email="anne@example.org"))
    at = AppTest.from_file("../app/main.py", default_timeout=60).run()
    assert not at.exception
    expected = "login-" + hashlib.sha256(b"anne@example.org").hexdigest()[:24]
    assert at.session_state[VISITOR_KEY] == expected
    assert any("kept by your login" in caption.value for caption in at.sidebar.caption)


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_kitchen")
def test_the_presenters_run_on_a_compiled_path_says_it_is_preparing_then_cooks_alone(hosted, tiny_folder):
    from app.kitchen import GenerationJob, model_slot

    slot = model_slot(str(tiny_folder), "cpu", "float32")
    wait_for(lambda: slot.state == "ready", what="the tiny model")
    settings = GenerationSettings(max_new_tokens=5, stop_at_eos=False, chat_template=False)
    job = GenerationJob(prompt="soup", settings=settings, owner=ANNE, path="compiled")
    slot.submit(job)
    wait_for(lambda: job.path_progress is not None or not job.active, what="the path's preparation")
    said = job.path_progress  # what the live page shows meanwhile (app.watching.show_waiting)
    wait_for(lambda: not job.active, what="the compiled run", timeout_s=600)
    assert said is not None and "compiled" in said
    assert job.state == "done" and job.path_progress is None  # cleared by the first token
    assert job.trace.path["name"] == "compiled" and len(job.trace.events) == 5
    assert RunStore().open(f"traces/{job.saved_to.name}").path["name"] == "compiled"  # kept with its path
