"""A server's model, as far as this machine can know it: its config.json when it is here, never fetched."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from engine.served_config import kv_estimate, served_model_config

SMOLLM2_LIKE = {"model_type": "llama", "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "hidden_size": 576, "max_position_embeddings": 8192, "torch_dtype": "bfloat16"}  # fmt: skip
PER_TOKEN = 2 * 30 * 3 * 64 * 2  # K and V x layers x KV heads x head size (576 / 9) x 2 bytes: 23,040 B


def folder_with(tmp_path, config: object, *, raw: str | None = None):
    """A model folder holding this config.json."""
    folder = tmp_path / "served-model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(raw if raw is not None else json.dumps(config), encoding="utf-8")
    return str(folder)


def test_a_folder_on_this_machine_gives_the_architecture_and_a_kv_estimate(tmp_path):
    facts = served_model_config(folder_with(tmp_path, SMOLLM2_LIKE))
    assert facts == {"config_source": "its folder on this machine", "architecture": "llama", "layers": 30,
                     "kv_heads": 3, "head_dim": 64, "config_dtype": "bfloat16", "config_context_length": 8192,
                     "kv_bytes_per_token_estimate": PER_TOKEN}  # fmt: skip
    fp32 = served_model_config(folder_with(tmp_path, {**SMOLLM2_LIKE, "torch_dtype": "float32"}))
    assert fp32["kv_bytes_per_token_estimate"] == 2 * PER_TOKEN  # twice the bytes per number, twice the cache
    unknown = served_model_config(folder_with(tmp_path, {**SMOLLM2_LIKE, "torch_dtype": "int4-made-up"}))
    assert "kv_bytes_per_token_estimate" not in unknown and unknown["layers"] == 30  # no bytes guessed
    multimodal = served_model_config(folder_with(tmp_path, {"model_type": "llava", "text_config": SMOLLM2_LIKE}))
    assert multimodal["layers"] == 30 and multimodal["architecture"] == "llama"  # the text model's config


def test_a_hosted_kitchen_never_reads_a_folder_and_nothing_broken_is_believed(tmp_path):
    folder = folder_with(tmp_path, SMOLLM2_LIKE)
    assert served_model_config(folder, local_folders=False) == {}  # a typed name must not read this machine
    for broken in ("{not json", "[1, 2]", json.dumps({**SMOLLM2_LIKE, "num_hidden_layers": True}),
                   json.dumps({"model_type": "llama"})):  # fmt: skip
        assert served_model_config(folder_with(tmp_path, None, raw=broken)) == {}
    assert served_model_config(folder_with(tmp_path, None, raw=" " * 1_000_001)) == {}  # not a config's size
    assert served_model_config(str(tmp_path / "no-such-folder")) == {}
    assert served_model_config("tiny-server") == {}  # neither a folder nor a hub id


def test_a_hub_id_is_read_from_the_local_cache_only(tmp_path, monkeypatch):
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--acme--chef-7b" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(SMOLLM2_LIKE), encoding="utf-8")
    (tmp_path / "hub" / "models--acme--chef-7b" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--chef-7b" / "refs" / "main").write_text("abc123", encoding="utf-8")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert served_model_config("acme/chef-7b")["config_source"] == "the local Hugging Face cache"
    assert served_model_config("acme/not-cached") == {}  # not here: nothing is downloaded


def test_the_kv_estimate_is_said_with_its_formula_and_drawn_on_a_servers_run(tmp_path):
    from conftest import html_of, loopback_server
    from streamlit.testing.v1 import AppTest
    from test_remote import TinyServer

    from engine.remote import parse_endpoint
    from engine.remote_run import run_remote_trace
    from engine.trace import default_remote_trace_path, save_trace

    model = {"name": "m", **served_model_config(folder_with(tmp_path, SMOLLM2_LIKE))}
    assert kv_estimate(model, answer_tokens=10) == (
        "Its config.json (its folder on this machine) says about 23.04 kB per token: 2 x 30 layers x 3 KV heads x 64 "
        "head size x 2 bytes (bfloat16), so these 10 answer tokens hold about 230.40 kB there, and every prompt token "
        "as much again (an estimate: the server may keep its cache in another dtype)."
    )
    assert kv_estimate({"name": "m"}, answer_tokens=10) is None
    with loopback_server(TinyServer) as server:
        trace = run_remote_trace(parse_endpoint(f"{server}/happy/v1"), "hi", model="m")
    assert "layers" not in trace.model  # the tiny server names "tiny-server": no config here
    with_config = replace(trace, model={**trace.model, **served_model_config(folder_with(tmp_path, SMOLLM2_LIKE))})
    save_trace(with_config, default_remote_trace_path())  # the trace contract holds the config's fields
    at = AppTest.from_file("../pages/runs.py", default_timeout=30).run()
    at.multiselect(key="runs_selected").set_value([at.multiselect(key="runs_selected").options[0]]).run()
    assert not at.exception
    said = " ".join(info.value for info in at.info).replace("\\", "")
    assert "says about 23.04 kB per token" in said and "these 4 answer tokens hold about 92.16 kB" in said
    assert "~23,040 B (estimate)" in html_of(at)  # the KV-bytes card


@pytest.mark.parametrize("name", ["../etc", "/", "a/b/c"])
def test_paths_are_never_taken_for_hub_ids(name, tmp_path):
    assert served_model_config(name, local_folders=False) == {}
