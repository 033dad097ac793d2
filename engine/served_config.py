"""What this machine can know of a server's model: its config.json, when that file is already here (never fetched).

A server names its model. When the name is a folder on this machine (`transformers serve <folder>`, or any server
started here on a folder) or a repository in the local Hugging Face cache, its config gives the architecture, and
from it an estimate of the KV-cache bytes per token at the config's dtype (REFERENCES.md's formula; the server may
keep its cache in another dtype, e.g. vLLM's --kv-cache-dtype fp8, hence "estimate").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.facts import kv_bytes_per_token, looks_like_path
from engine.units import fmt_bytes

MAX_CONFIG_BYTES = 1_000_000  # a model's config.json is a few kB: anything larger is not one
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")  # org/name, as the hub spells repositories


def find_config(name: str, *, local_folders: bool) -> tuple[Path, str] | None:
    """The model's config.json on this machine and where it was found, or None (nothing is downloaded).

    `local_folders`: look for a folder by that name too (off in a hosted kitchen: a visitor's or a server's name
    must not make this machine read its own folders).
    """
    if local_folders and looks_like_path(name):
        candidate = Path(name).expanduser() / "config.json"
        if candidate.is_file():
            return candidate, "its folder on this machine"
    if HUB_ID.match(name):
        from huggingface_hub import try_to_load_from_cache  # reads the cache's folders only: no network

        cached = try_to_load_from_cache(name, "config.json")
        if isinstance(cached, str):
            return Path(cached), "the local Hugging Face cache"
    return None


def positive_int(value: object) -> int | None:
    """The value when it is a whole number above 0 (JSON's true is not one), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def served_model_config(name: str, *, local_folders: bool = True) -> dict:
    """The architecture a trace's `model` can add for a server's model (flat fields), or {} when it is not here."""
    found = find_config(name, local_folders=local_folders)
    if found is None:
        return {}
    path, where = found
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    text = data.get("text_config") if isinstance(data.get("text_config"), dict) else data  # a multimodal model's
    layers, heads = positive_int(text.get("num_hidden_layers")), positive_int(text.get("num_attention_heads"))
    hidden = positive_int(text.get("hidden_size"))
    if layers is None or heads is None or hidden is None:
        return {}
    kv_heads = positive_int(text.get("num_key_value_heads")) or heads
    head_dim = positive_int(text.get("head_dim")) or hidden // heads
    dtype = str(data.get("torch_dtype") or data.get("dtype") or text.get("torch_dtype") or "")
    element_bytes = DTYPE_BYTES.get(dtype)
    facts = {
        "config_source": where,
        "architecture": str(text.get("model_type") or data.get("model_type") or "?")[:100],
        "layers": layers,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "config_dtype": dtype[:40] or None,
        "config_context_length": positive_int(text.get("max_position_embeddings")),
        "kv_bytes_per_token_estimate": (
            kv_bytes_per_token(layers=layers, kv_heads=kv_heads, head_dim=head_dim, element_bytes=element_bytes)
            if element_bytes
            else None
        ),
    }
    return {key: value for key, value in facts.items() if value is not None}


def kv_estimate(model: dict, *, answer_tokens: int) -> str | None:
    """What a server's KV cache holds for an answer, estimated from its config (None when its config is not here)."""
    per_token = model.get("kv_bytes_per_token_estimate")
    if not per_token:
        return None
    return (
        f"Its config.json ({model.get('config_source')}) says about {fmt_bytes(per_token)} per token: 2 x "
        f"{model['layers']} layers x {model['kv_heads']} KV heads x {model['head_dim']} head size x "
        f"{per_token // (2 * model['layers'] * model['kv_heads'] * model['head_dim'])} bytes "
        f"({model.get('config_dtype')}), so these {answer_tokens} answer tokens hold about "
        f"{fmt_bytes(per_token * answer_tokens)} there, and every prompt token as much again (an estimate: the "
        "server may keep its cache in another dtype)."
    )
