"""Device/dtype choice and model-loading errors (fast: nothing real is loaded here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from engine import ModelLoadError, SettingsError, load_model
from engine.facts import looks_like_path
from engine.hardware import available_devices, describe_hardware, pick_device, pick_dtype
from engine.loading import explain_load_failure


def test_default_device_and_dtype_follow_the_hardware():
    device = pick_device()
    assert str(device) == available_devices()[0]
    expected = (
        (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        if device.type == "cuda"
        else torch.float32
    )
    assert pick_dtype(None, device) == expected
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16


@pytest.mark.parametrize(
    ("device", "message"), [("tpu", "unknown device"), ("cuda:7", "not available"), ("banana", "unknown device")]
)
def test_unknown_or_missing_devices_are_refused(device, message):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine really has 8 GPUs")
    with pytest.raises(SettingsError, match=message):
        pick_device(device)


def test_unknown_dtype_is_refused():
    with pytest.raises(SettingsError, match="unknown dtype 'float7'"):
        pick_dtype("float7", torch.device("cpu"))


def test_hardware_description_is_measured_here():
    info = describe_hardware(torch.device("cpu"))
    assert info["cpu_cores_logical"] >= 1
    assert info["memory_total_bytes"] > 2**28
    assert info["cpu"]


def test_a_missing_folder_fails_fast_with_one_sentence():
    with pytest.raises(ModelLoadError, match="there is no folder at that path"):
        load_model("/no/such/model/folder")


def test_an_unknown_hub_id_fails_with_a_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not load model 'nobody/no-such-model-xyz'"):
        load_model("nobody/no-such-model-xyz")


def test_a_folder_that_is_not_a_model_fails_with_a_reason(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="could not load model"):
        load_model(str(tmp_path))


def test_failure_explanations_name_the_cause():
    assert "architecture" in explain_load_failure("x", ValueError("Unrecognized model in x"))
    assert "does not fit" in explain_load_failure("x", RuntimeError("CUDA out of memory. Tried"))
    assert looks_like_path("./models/a")
    assert looks_like_path("/abs")
    assert not looks_like_path("org/model")


def test_engine_never_imports_streamlit():
    code = "import sys, engine, engine.cli, engine.bench; print('streamlit' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_mistyped_hub_id_fails_in_seconds_when_the_hub_is_out_of_reach(monkeypatch):
    import time

    import engine.loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # as on a visitor's machine: nothing says offline
    monkeypatch.setattr(engine.loading, "hub_reachable", lambda **_: False)  # the closed network, without traffic
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as caught:
        load_model("nobody/no-such-model-xyz")
    assert time.monotonic() - started < 10  # transformers alone retried for ~40 s
    assert "neither in the local Hugging Face cache nor reachable on the hub" in str(caught.value)
    assert "the bundled SmolLM2-135M-Instruct" in str(caught.value)  # names what does load here


def test_hub_reachable_says_no_at_once_when_told_offline(monkeypatch):
    import socket

    from engine.loading import hub_reachable

    def no_connections(*args, **kwargs):
        raise AssertionError("hub_reachable opened a connection although HF_HUB_OFFLINE is set")

    monkeypatch.setattr(socket, "create_connection", no_connections)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False
