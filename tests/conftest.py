"""Shared fixtures and helpers: a tiny random Llama for mechanics, the real default model for truth, AppTest and
CLI helpers, the experiments' small options, isolation of every folder a test writes, and CI's skip guard.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# No test may reach a model hub: a missing model must fail fast, not retry a closed network for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Nor touch the user's own model cache: the converted default model lives in a test cache inside the checkout
# (ignored by git; converted once, ~30 s, then reused by every test, subprocess and dashboard the tests start).
os.environ["INFERENCE_KITCHEN_CACHE"] = os.environ.get("INFERENCE_KITCHEN_TEST_CACHE") or str(ROOT / ".test-cache")

# Tests that may skip, and why. Under CI=true any other skip is a failure (see pytest_runtest_logreport below).
ALLOWED_SKIPS = {
    # pick a device this machine lacks; on a box with 8 GPUs the device exists
    "test_unknown_or_missing_devices_are_refused": "this machine really has 8 GPUs",
}

TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_tokenizer():
    """A byte-level tokenizer with no merges: every UTF-8 byte is one token (so characters split across tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={char: index for index, char in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]})
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def make_tiny_model(*, context: int = 128, seed: int = 0):
    """A 2-layer random Llama (hidden 64, 4 heads, 2 KV heads) with the byte tokenizer, as a LoadedModel."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine import LoadedModel

    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return LoadedModel.from_objects(model, tokenizer, name="tiny-random-llama", source="random init in tests")


@pytest.fixture(scope="session")
def tiny():
    """The tiny random model, shared by the fast tests."""
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """The tiny random model saved as a local model folder (as a user's own model would be)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny = make_tiny_model()
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def real():
    """The real default model (SmolLM2-135M-Instruct), loaded once per test session."""
    from engine import load_model

    return load_model()


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """Keep traces written by tests out of the user's data folder."""
    monkeypatch.setenv("INFERENCE_KITCHEN_DATA", str(tmp_path / "data"))


@pytest.fixture(autouse=True)
def real_model_only_in_slow_tests(request, monkeypatch):
    """A test not marked slow must not start the real default model's worker (seconds of CPU and ~1 GB)."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    import app.kitchen
    from engine.facts import DEFAULT_MODEL

    started: list[str] = []
    original = app.kitchen.ModelWorker

    class Guarded(original):
        def __init__(self, name: str | None = None, **options) -> None:
            if name in (None, DEFAULT_MODEL):
                started.append(str(name))
            super().__init__(name, **options)

    monkeypatch.setattr(app.kitchen, "ModelWorker", Guarded)
    yield
    assert not started, "this test started the real model's worker: mark it slow, or keep the model out of it"


def in_ci() -> bool:
    """True in CI (.ci/run runs with CI=true)."""
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip not listed in ALLOWED_SKIPS (with its reason) fails the test instead."""
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    allowed = ALLOWED_SKIPS.get(item.originalname if hasattr(item, "originalname") else item.name)
    if allowed is None or allowed not in reason:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI without being on the allowed list (tests/conftest.py ALLOWED_SKIPS): {reason}"


# ---- the experiments' small options, shared by the tiny-model tests and the page tests ---------------------------


def small_options() -> dict:
    """Small options for every experiment: seconds on the tiny model."""
    from engine.experiments.batch import BatchOptions
    from engine.experiments.energy import EnergyOptions
    from engine.experiments.kv_cache import KvCacheOptions
    from engine.experiments.prefill import PrefillOptions
    from engine.experiments.roofline import RooflineOptions
    from engine.experiments.speed import SpeedOptions
    from engine.experiments.train_vs_infer import TrainVsInferOptions

    return {
        "prefill": PrefillOptions(prompt_lengths=(16, 64, 256), repeats=3, decode_tokens=4),
        "kv-cache": KvCacheOptions(prompt="soup of the day", new_tokens=16),
        "batch": BatchOptions(batch_sizes=(1, 4), prompt_tokens=16, decode_tokens=8),
        "roofline": RooflineOptions(repeats=3, bandwidth_mb=32, decode_tokens=6, prefill_tokens=32),
        "train-vs-infer": TrainVsInferOptions(train_tokens=32, new_tokens=8, context_tokens=512),
        "energy": EnergyOptions(prompt="soup of the day", new_tokens=8, runs=2),
        "speed": SpeedOptions(paths=("eager",), new_tokens=8, quality_tokens=64, bandwidth_mb=32),
    }


SMALL = small_options()


# ---- the command line ---------------------------------------------------------------------------------------------


def engine_cli(*args: str, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m engine ARGS` from the repository root; its exit code and output."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


# ---- AppTest ------------------------------------------------------------------------------------------------------


def wait_for(condition, *, what: str, timeout_s: float = 120) -> None:
    """Poll until `condition()` holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


HOSTED_CAPS = "max_new_tokens = 32\nqueue_length = 2\nrequests_per_visitor = 1\n"


def host_kitchen(tmp_path, monkeypatch, tiny_folder, *, caps: str = HOSTED_CAPS):
    """Configure this process as a hosted kitchen offering the tiny model only; returns its configuration."""
    from app import hosting

    config = tmp_path / "kitchen.toml"
    config.write_text(
        f'[hosting]\nmode = "hosted"\n\n[models]\nallowed = ["{tiny_folder}"]\nmax_loaded = 2\n\n[caps]\n{caps}',
        encoding="utf-8",
    )
    monkeypatch.setenv("INFERENCE_KITCHEN_CONFIG", str(config))
    hosting.kitchen_config.cache_clear()
    return hosting.kitchen_config()


@pytest.fixture
def hosted(tmp_path, monkeypatch, tiny_folder):
    """This process configured as a hosted kitchen offering the tiny model only (1 request per visitor, queue 2)."""
    from app import hosting

    yield host_kitchen(tmp_path, monkeypatch, tiny_folder)
    hosting.kitchen_config.cache_clear()


@pytest.fixture
def fresh_kitchen():
    """A test starts with no cached model slot, and every worker process it started is stopped after."""
    import streamlit as st

    from app.kitchen import close_all_slots

    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    close_all_slots()
    st.cache_resource.clear()


def html_of(at) -> str:
    """All st.html bodies on the page, joined."""
    return "\n".join(element.proto.body for element in at.get("html"))


def run_until(at, done, *, timeout_s: float, what: str):
    """Rerun the app (as the live fragments would) until `done(at)` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return at
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print the broken pipes a test's failing behaviours cause on purpose."""

    def handle_error(self, request, client_address) -> None:
        pass


@contextlib.contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on a free loopback port, serving `handler` on a thread of its own; yields its base URL."""
    httpd = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
