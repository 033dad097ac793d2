"""A model's forward pass over a KV cache allocated once (transformers' StaticCache), ready to be compiled.

The fast paths (engine.paths) compile `forward` for one new token: with the cache's length fixed (positions
beyond the current one are masked), every decode step has the same shapes, so `torch.compile` traces it once and
every later step reuses the generated code. Prefill goes through the same forward, uncompiled (its length varies).
The rotary position embedding is looked up in a table made once for every cache position (RotaryTable): computed
inside the compiled step, its cosines and sines were recomputed for every cached position at every step.
"""

from __future__ import annotations

import copy

import torch
from transformers import StaticCache

from engine.facts import kv_bytes_per_token
from engine.generate import cache_keyword


def unsupported_reason(model: torch.nn.Module) -> str | None:
    """None when the model can run over a static cache as one compiled graph; otherwise one sentence why not."""
    if not getattr(model, "_can_compile_fullgraph", False):
        return f"{type(model).__name__} cannot be compiled as one graph over a static cache (transformers marks it so)"
    return None


LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")  # transformers recomputes these frequencies as a sequence grows


class RotaryTable(torch.nn.Module):
    """A rotary embedding read from a table computed once for every cache position, instead of computed per step.

    Compiled, the per-step version's cosines and sines were inlined into the attention loop and recomputed for
    every cached position each step (~8 ms of a ~28 ms step here with 512 positions); a table read costs a load.
    """

    reads_one_row = True  # a step reads one row of each table (engine.quantize.weight_bytes_read_per_token)

    def __init__(self, rotary: torch.nn.Module, *, max_len: int, device: torch.device) -> None:
        super().__init__()
        positions = torch.arange(max_len, device=device)[None, :]  # (1, max_len)
        probe = torch.zeros(1, dtype=torch.float32, device=device)
        with torch.no_grad():
            cos, sin = rotary(probe, positions)  # (1, max_len, head_dim) each, computed by the model's own code
        self.register_buffer("cos", cos[0].clone(), persistent=False)  # (max_len, head_dim)
        self.register_buffer("sin", sin[0].clone(), persistent=False)  # (max_len, head_dim)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) for positions (B, T), each (B, T, head_dim) in x's dtype."""
        return self.cos[position_ids].to(x.dtype), self.sin[position_ids].to(x.dtype)


def use_rotary_table(model: torch.nn.Module, *, max_len: int, device: torch.device) -> bool:
    """Swap the model's rotary embedding for a RotaryTable when it has the usual (x, position_ids) one."""
    inner = getattr(model, "model", None)
    rotary = getattr(inner, "rotary_emb", None)
    if rotary is None or getattr(rotary, "rope_type", "default") in LENGTH_DEPENDENT_ROPE:
        return False  # none, or one whose frequencies change with the sequence's length: left as it is
    inner.rotary_emb = RotaryTable(rotary, max_len=max_len, device=device)
    return True


class StaticDecoder:
    """A private copy of a model whose attention reads a preallocated cache of `max_len` positions."""

    def __init__(self, model: torch.nn.Module, *, max_len: int, own_copy: bool = True) -> None:
        # The copy is the path's own: its attention implementation is switched to plain matrix products (what
        # compiled fastest here), which must not change the loaded model the eager path keeps serving.
        self.model = copy.deepcopy(model) if own_copy else model
        self.model.eval()
        self.model.config._attn_implementation = "eager"
        config = self.model.config.get_text_config(decoder=True)
        self.max_len = max_len
        embedding = self.model.get_input_embeddings().weight
        self.dtype, self.device = embedding.dtype, embedding.device
        self.cache = StaticCache(config=self.model.config, max_cache_len=max_len)
        use_rotary_table(self.model, max_len=max_len, device=self.device)
        self.cache_keyword = cache_keyword(type(self.model))  # looked up here: not inside the compiled code
        heads = config.num_attention_heads
        self.position_bytes = kv_bytes_per_token(
            layers=config.num_hidden_layers,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            element_bytes=self.dtype.itemsize,
        )
        with torch.inference_mode():  # the cache allocates its tensors on first use: do that now, uncompiled, so the
            self.forward(torch.zeros((1, 1), dtype=torch.long, device=self.device),  # compiled step sees them ready
                         torch.zeros(1, dtype=torch.long, device=self.device))  # fmt: skip
        self.reset()

    def reset(self) -> None:
        """Forget every cached position (the tensors stay allocated)."""
        with torch.inference_mode():  # the cache's tensors were made in inference mode
            self.cache.reset()
        self.filled = 0

    def kv_cache_bytes(self) -> int:
        """Bytes of keys and values held for the positions written so far (what the cache holds, not allocates)."""
        return self.filled * self.position_bytes

    def allocated_bytes(self) -> int:
        """Bytes the static cache allocates for all `max_len` positions (each decode step reads all of them)."""
        return self.max_len * self.position_bytes

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Read tokens (1, T) at cache positions (T,), writing their keys and values; last logits (1, vocab)."""
        cache = {self.cache_keyword: self.cache}
        output = self.model(input_ids=ids, cache_position=positions, use_cache=True, logits_to_keep=1, **cache)
        return output.logits[:, -1, :]  # (1, vocab)
