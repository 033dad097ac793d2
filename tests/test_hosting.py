"""Hosting: the configuration file, models from an allow-list only, one slot per model however it is spelled,
at most N models loaded (least recently used closed), loads that hang, and the caps a hosted kitchen keeps."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from conftest import wait_for
from streamlit.testing.v1 import AppTest

from app import hosting
from engine.config import Caps, KitchenConfig, load_config, parse_config
from engine.errors import ModelLoadError, SettingsError
from engine.facts import DEFAULT_MODEL, model_slot_name

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "kitchen.example.toml"
FORGED_MODELS = ("/etc", "Qwen/Qwen2.5-72B-Instruct", "../../..", "~")


def model_workers() -> list[psutil.Process]:
    """The model worker processes below this test."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "engine.worker" in process.cmdline():
                found.append(process)
        except psutil.Error:
            pass
    return found


# ---- the file ------------------------------------------------------------------------------------------------


def test_the_example_file_is_the_defaults_and_no_file_is_local_mode(monkeypatch):
    example = load_config(EXAMPLE)
    assert (example.mode, example.models, example.caps) == ("local", (DEFAULT_MODEL,), Caps())
    assert example == KitchenConfig(source=str(EXAMPLE))  # every key in it, at its default
    monkeypatch.delenv("INFERENCE_KITCHEN_CONFIG", raising=False)
    assert not load_config().hosted


def test_every_key_of_the_dataclasses_is_in_the_example_file():
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in ("mode", "address", "allowed_hosts", "allowed", "max_loaded", "load_timeout_s", *vars(Caps())):
        assert f"\n{key} = " in text, key


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[hosting]\nmode = 'open'\n", "mode must be one of local, hosted"),
        ("[hosting]\nmodes = 'hosted'\n", "unknown key 'modes' in [hosting]"),
        ("[cooking]\nx = 1\n", "unknown section [cooking]"),
        ("[caps]\nmax_new_tokens = '256'\n", "[caps] max_new_tokens must be a whole number, not '256'"),
        ("[caps]\nmax_new_tokens = -1\n", "must be a positive number"),
        ("[caps]\nqueue_length = true\n", "[caps] queue_length must be a whole number, not True"),
        ("[models]\nload_timeout_s = nan\n", "must be a positive number"),
        ("[models]\nallowed = []\n", "must name at least one model"),
        ("[models]\nallowed = ['ok', '']\n", "must list non-empty names"),
        ("[hosting\nmode = 'hosted'\n", "is not valid TOML"),
    ],
)
def test_a_wrong_key_or_value_is_refused_with_a_sentence_naming_it(text, says):
    with pytest.raises(SettingsError) as refused:
        parse_config(text, source="kitchen.toml")
    assert says in str(refused.value)
    assert str(refused.value).startswith("kitchen.toml")


def test_a_missing_file_is_refused_with_its_name(tmp_path):
    with pytest.raises(SettingsError, match="cannot read the config file"):
        load_config(tmp_path / "nowhere.toml")


def test_a_bad_config_stops_make_run_with_a_sentence_before_anything_starts(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "kitchen.toml"
    bad.write_text("[hosting]\nmode = 'everyone'\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "app.launch"],
        cwd=ROOT,
        env={**__import__("os").environ, "INFERENCE_KITCHEN_CONFIG": str(bad)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Inference Kitchen did not start" in done.stderr
    assert "mode must be one of local, hosted" in done.stderr
    assert "Traceback" not in done.stderr


def test_hosted_mode_hides_tracebacks_and_passes_the_allowed_hosts():
    from app.launch import server_options

    config = KitchenConfig(mode="hosted", address="0.0.0.0", allowed_hosts=("kitchen.example.org",))
    options = server_options(config, ["--server.port", "9000"])
    assert options[:2] == ["--server.address", "0.0.0.0"]
    assert ["--server.allowedHosts", "kitchen.example.org"] == options[2:4]
    assert "--client.showErrorDetails" in options and options[options.index("--client.showErrorDetails") + 1] == "none"
    assert server_options(config, ["--server.address", "127.0.0.1"])[:2] == [
        "--server.allowedHosts",
        "kitchen.example.org",
    ]
    assert server_options(KitchenConfig(), []) == ["--server.address", "127.0.0.1"]  # local: loopback, as before


# ---- names -------------------------------------------------------------------------------------------------------


def test_every_spelling_of_a_folder_names_one_slot(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    spellings = [
        "model",
        "model/",
        "model/.",
        "./model",
        "./model//",
        str(folder),
        "link",
        "../" + tmp_path.name + "/model",
    ]
    assert {model_slot_name(name) for name in spellings} == {str(folder.resolve())}
    assert model_slot_name("  org/some-model ") == "org/some-model"  # a hub id (no such folder here)
    assert model_slot_name(DEFAULT_MODEL) == DEFAULT_MODEL
    assert model_slot_name("") == DEFAULT_MODEL


def test_hosted_mode_refuses_any_model_not_offered_however_it_is_spelled(hosted, tiny_folder):
    for forged in FORGED_MODELS:
        with pytest.raises(SettingsError, match="not one of this kitchen's models"):
            hosting.check_model_allowed(forged)
    hosting.check_model_allowed(str(tiny_folder) + "/.")  # an alias of the offered folder is that folder
    with pytest.raises(SettingsError, match="at most 32 new tokens"):
        hosting.check_new_tokens_allowed(33)
    hosting.check_new_tokens_allowed(32)
    assert hosting.max_new_tokens_limit() == 32


# ---- slots (real worker processes on the tiny model) ---------------------------------------------------------------


@pytest.mark.usefixtures("fresh_kitchen")
def test_forged_names_start_no_worker_and_five_aliases_share_one(hosted, tiny_folder, monkeypatch):
    from app.kitchen import OPEN_SLOTS, model_slot

    def worker_pids() -> set[int]:
        return {process.pid for process in model_workers()}

    workers_before, slots_before = worker_pids(), set(OPEN_SLOTS)
    for forged in FORGED_MODELS:
        with pytest.raises(SettingsError):
            model_slot(forged, "cpu", "float32")
    assert worker_pids() - workers_before == set()
    assert set(OPEN_SLOTS) == slots_before
    monkeypatch.chdir(tiny_folder.parent)
    aliases = [
        str(tiny_folder),
        str(tiny_folder) + "/",
        str(tiny_folder) + "/.",
        tiny_folder.name,
        f"./{tiny_folder.name}",
    ]
    slots = {model_slot(alias, "cpu", "float32") for alias in aliases}
    assert len(slots) == 1
    (slot,) = slots
    wait_for(lambda: slot.state != "loading", what="the tiny model")  # its thread starts the process
    assert len(worker_pids() - workers_before) == 1
    assert [slot.name for slot in set(OPEN_SLOTS) - slots_before] == [str(tiny_folder.resolve())]


@pytest.mark.usefixtures("fresh_kitchen")
def test_past_max_loaded_the_least_recently_used_model_is_closed_with_its_process(tiny_folder, tmp_path):
    import shutil

    from app.kitchen import model_slot

    assert hosting.kitchen_config().max_loaded_models == 2  # local mode's default, read when app.kitchen loaded
    other = shutil.copytree(tiny_folder, tmp_path / "another-model")
    first = model_slot(str(tiny_folder), "cpu", "float32")
    second = model_slot(str(tiny_folder), "cpu", "bfloat16")
    wait_for(lambda: first.state == second.state == "ready", what="two models")
    first_pid = first.worker.process.pid
    model_slot(str(tiny_folder), "cpu", "float32")  # used again: now the second is the least recently used
    third = model_slot(str(other), "cpu", "float32")
    wait_for(lambda: second.closed, what="the least recently used slot to close", timeout_s=30)
    assert not first.closed and not third.closed
    assert not second.worker.is_alive()
    assert first.worker.process.pid == first_pid and first.worker.is_alive()
    assert not second.thread.is_alive()


def test_a_load_that_hangs_past_its_limit_fails_with_a_sentence(tiny_folder):
    from engine.worker import ModelWorker

    worker = ModelWorker(str(tiny_folder), device="cpu", dtype="float32", threads=1)
    try:
        started = time.monotonic()
        with pytest.raises(ModelLoadError, match=r"did not finish within 0 s \(this kitchen's limit\)"):
            worker.wait_loaded(timeout_s=0.2)  # imports alone take seconds
        assert time.monotonic() - started < 2
    finally:
        worker.close()
    assert not worker.is_alive()


@pytest.mark.usefixtures("fresh_kitchen")
def test_past_the_queue_cap_an_order_is_refused_with_a_message(hosted, tiny_folder):
    from app.kitchen import GenerationJob, model_slot
    from engine import GenerationSettings

    slot = model_slot(str(tiny_folder), "cpu", "float32")  # still loading: every order waits in the queue
    orders = [
        GenerationJob(prompt=f"order {index}", settings=GenerationSettings(max_new_tokens=4)) for index in range(3)
    ]
    for order in orders:
        slot.submit(order)
    assert orders[2].state == "failed"
    assert "the kitchen's queue is full (2 orders waiting" in orders[2].error
    wait_for(lambda: not orders[0].active and not orders[1].active, what="the two queued orders")
    assert [order.state for order in orders[:2]] == ["done", "done"]


@pytest.mark.usefixtures("fresh_kitchen")
def test_hosted_sidebar_offers_a_select_box_of_the_allowed_models(hosted, tiny_folder):
    from app.kitchen import OPEN_SLOTS
    from app.visitors import PRESENTER_KEY

    at = AppTest.from_file("../app/main.py", default_timeout=60)
    at.session_state[PRESENTER_KEY] = True  # the presenter picks from every allowed model (and may load it)
    at.run()
    assert not [box for box in at.sidebar.text_input if box.key == "sidebar_model"]
    (picker,) = [box for box in at.sidebar.selectbox if box.key == "sidebar_model"]
    assert picker.options == [str(tiny_folder)]
    assert {slot.name for slot in OPEN_SLOTS} == {str(tiny_folder.resolve())}
    assert not at.exception


@pytest.mark.usefixtures("fresh_kitchen")
def test_a_hosted_visitor_picks_only_among_loaded_models_and_cannot_load_another(hosted, tiny_folder, monkeypatch):
    import streamlit as st

    from app.kitchen import OPEN_SLOTS, model_slot

    at = AppTest.from_file("../app/main.py", default_timeout=60).run()
    assert not [box for box in at.sidebar.selectbox if box.key in ("sidebar_model", "sidebar_device", "sidebar_dtype")]
    (menu,) = [box for box in at.sidebar.selectbox if box.key == "sidebar_menu"]
    assert menu.options == [f"{tiny_folder} · float32 on cpu"]  # the kitchen's default, started by this visit
    assert not at.exception
    slots_before = set(OPEN_SLOTS)
    monkeypatch.setattr(st, "session_state", {})  # a visitor without the presenter's rights
    with pytest.raises(SettingsError, match="only the presenter loads models"):
        model_slot(str(tiny_folder), "cpu", "bfloat16")  # allowed, but another dtype would start another process
    assert set(OPEN_SLOTS) == slots_before


@pytest.mark.parametrize("forged", FORGED_MODELS)
def test_a_forged_model_name_in_a_hosted_session_becomes_the_default(hosted, tiny_folder, forged, monkeypatch):
    import streamlit as st

    from app.sidebar import current_selection

    monkeypatch.setattr(st, "session_state", {"sidebar_model": forged})  # whatever a page was sent
    assert current_selection().model == str(tiny_folder)
