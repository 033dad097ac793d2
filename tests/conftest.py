"""Shared fixtures: a tiny random Llama for fast mechanics tests, the real default model for truth."""

from __future__ import annotations

import os

import pytest
import torch

# No test may reach a model hub: a missing model must fail fast, not retry a closed network for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|endoftext|>")
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
def real():
    """The real default model (SmolLM2-135M-Instruct), loaded once per test session."""
    from engine import load_model

    return load_model()


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """Keep traces written by tests out of the user's data folder."""
    monkeypatch.setenv("INFERENCE_KITCHEN_DATA", str(tmp_path / "data"))
