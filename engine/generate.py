"""The instrumented generation loop, in layers: step (model work only) -> stream (measures each token).

`generate_step` is plain model code: one prefill forward, then one forward per new token. `stream_generate`
wraps it with the clock and records one `TokenRecord` per token. The timed region is exactly one
`next(steps)`, i.e. a forward pass plus sampling; detokenizing, top-5, memory and KV probes run after the
clock has stopped. On CUDA/MPS the device is synchronized before every clock read.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from engine.errors import EngineError, GenerationCancelled, PromptError
from engine.hardware import device_clock_ns, memory_probe
from engine.loading import LoadedModel
from engine.records import Alternative, TokenRecord
from engine.request import (
    PROMPT_CHARS_PER_CONTEXT_TOKEN,
    CancelFlag,
    Request,
    check_prompt_text,
)
from engine.settings import GenerationSettings, check_settings

if TYPE_CHECKING:
    from engine.paths import PreparedPath

TOP_ALTERNATIVES = 5  # how many most-likely tokens each record keeps


def prepare_request(loaded: LoadedModel, prompt: str, *, settings: GenerationSettings) -> Request:
    """Check the settings and prompt, apply the chat template if asked, and tokenize."""
    check_settings(settings)
    check_prompt_text(prompt)
    context = loaded.facts.context_length
    if len(prompt) > context * PROMPT_CHARS_PER_CONTEXT_TOKEN:
        raise PromptError(
            f"the prompt is {len(prompt):,} characters, far more than {loaded.facts.name} can read ({context:,} tokens)"
        )
    tokenizer = loaded.tokenizer
    use_template = settings.chat_template and bool(getattr(tokenizer, "chat_template", None))
    if use_template:
        messages = [{"role": "user", "content": prompt}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        rendered = prompt
    token_ids = tuple(tokenizer(rendered, add_special_tokens=not use_template)["input_ids"])
    if len(token_ids) >= context:
        raise PromptError(
            f"the prompt is {len(token_ids):,} tokens but {loaded.facts.name} reads at most {context:,} "
            "tokens, answer included: shorten it"
        )
    return Request(
        text=prompt,
        rendered=rendered,
        token_ids=token_ids,
        chat_template_applied=use_template,
        settings=settings,
        max_new_tokens=min(settings.max_new_tokens, context - len(token_ids)),
    )


def make_sampler(
    *, temperature: float, top_k: int, top_p: float, generator: torch.Generator
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from logits (1, vocab) to the next token (1, 1): argmax at temperature 0, else sampling."""
    if temperature == 0:
        return lambda logits: logits.argmax(dim=-1, keepdim=True)  # (1, 1)

    def sample(logits: torch.Tensor) -> torch.Tensor:
        scaled = logits.float() / temperature  # (1, vocab)
        if top_k:
            kth_best = torch.topk(scaled, min(top_k, scaled.size(-1))).values[..., -1:]  # (1, 1)
            scaled = scaled.masked_fill(scaled < kth_best, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)  # (1, vocab)
        if top_p < 1:
            sorted_probs, order = probs.sort(dim=-1, descending=True)  # (1, vocab) each
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p  # keep the smallest prefix reaching top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
        return torch.multinomial(probs, 1, generator=generator)  # (1, 1)

    return sample


@functools.cache
def cache_keyword(model_class: type) -> str:
    """The name a model's forward takes its KV cache by: `cache` in recent transformers, `past_key_values` before.

    Found on a GPU machine with transformers 5.17: passed by the newer name, the cache was silently ignored, so
    every decode step saw one token without context and the answer was "The-------" (and 0 bytes of cache).
    """
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


@torch.inference_mode()
def prefill(model: torch.nn.Module, input_ids: torch.Tensor, cache: DynamicCache | None) -> torch.Tensor:
    """Read a whole sequence (1, T) in one forward pass; return the last position's logits (1, vocab)."""
    cached = {cache_keyword(type(model)): cache} if cache is not None else {}
    output = model(input_ids=input_ids, use_cache=cache is not None, logits_to_keep=1, **cached)
    if cache is not None and cache.get_seq_length() < input_ids.shape[1]:
        raise EngineError(
            f"the model did not fill the KV cache (it holds {cache.get_seq_length()} of {input_ids.shape[1]} "
            "positions): this transformers version takes the cache by another name; please report it"
        )
    return output.logits[:, -1, :]  # (1, vocab)


@torch.inference_mode()
def decode_one_token(model: torch.nn.Module, token: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """Read one new token (1, 1) against the cached keys and values; return its logits (1, vocab)."""
    output = model(input_ids=token, use_cache=True, **{cache_keyword(type(model)): cache})
    return output.logits[:, -1, :]  # (1, vocab)


def generate_step(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    *,
    kv_cache: bool,
    sampler: Callable[[torch.Tensor], torch.Tensor],
) -> Iterator[tuple[torch.Tensor, torch.Tensor, DynamicCache | None]]:
    """Yield (token (1, 1), logits (1, vocab), cache) per new token, forever; the caller decides when to stop."""
    cache = DynamicCache(config=model.config) if kv_cache else None
    logits = prefill(model, prompt_ids, cache)  # (1, vocab)
    sequence = prompt_ids  # (1, T)
    while True:
        token = sampler(logits)  # (1, 1)
        yield token, logits, cache
        if cache is not None:
            logits = decode_one_token(model, token, cache)
        else:  # no cache: re-read the whole sequence, prompt and answer so far, at every step
            sequence = torch.cat([sequence, token], dim=-1)  # (1, T + 1)
            logits = prefill(model, sequence, None)


def kv_cache_bytes(cache: DynamicCache | None) -> int:
    """Bytes held by the cache's key and value tensors, read from the tensors themselves."""
    if cache is None:
        return 0
    if hasattr(cache, "kv_cache_bytes"):  # a fast path's static cache: the positions written so far
        return cache.kv_cache_bytes()
    tensors = (getattr(layer, name, None) for layer in cache.layers for name in ("keys", "values"))
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors if tensor is not None)


def alternatives(tokenizer: object, top: torch.return_types.topk) -> tuple[Alternative, ...]:
    """The most likely tokens of one step as text with their probabilities, from a topk of its log-probabilities."""
    return tuple(
        Alternative(token=tokenizer.decode([i]), prob=float(p))
        for i, p in zip(top.indices.tolist(), top.values.exp().tolist(), strict=True)
    )


class StreamingDetokenizer:
    """Turns token ids into text piece by piece, holding back the bytes of a character split across tokens."""

    def __init__(self, tokenizer: object) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0  # window start: decoding a little context keeps leading spaces right
        self.read_offset = 0  # ids before this have been emitted as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        """Take one token; return the new text it completes ('' while a character is incomplete)."""
        self.ids.append(token_id)
        return self._emit(final=False)

    def flush(self) -> str:
        """Return whatever text is still held back (at the end of a run)."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        before = self._decode(self.ids[self.prefix_offset : self.read_offset])
        after = self._decode(self.ids[self.prefix_offset :])
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return after[len(before) :]


def check_fits_path(path: PreparedPath, request: Request) -> None:
    """Refuse, before any work, a request a fast path's static cache cannot hold or that turns its cache off."""
    if not request.settings.kv_cache:
        raise PromptError(f"the {path.name} path always uses its KV cache: turn the cache back on, or use eager")
    needed = len(request.token_ids) + request.max_new_tokens
    if needed > path.max_len:
        raise PromptError(
            f"the {path.name} path's cache holds {path.max_len} positions, and this prompt ({len(request.token_ids)} "
            f"tokens) with up to {request.max_new_tokens} new ones needs {needed}: ask for fewer, or use eager"
        )


def stream_generate(
    loaded: LoadedModel,
    request: Request,
    *,
    cancel: CancelFlag | None = None,
    path: PreparedPath | None = None,
) -> Iterator[TokenRecord]:
    """Run one request, yielding a measured TokenRecord per token as soon as it exists.

    Stops at an end-of-sequence token (when settings.stop_at_eos) or after request.max_new_tokens.
    When `cancel.is_set()` turns true it stops between two steps with GenerationCancelled. `path`: a prepared
    fast decode path (engine.paths); None or eager runs the model as loaded.
    """
    settings, device, tokenizer = request.settings, loaded.device, loaded.tokenizer
    clock, memory_in_use = device_clock_ns(device), memory_probe(device)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    sampler = make_sampler(
        temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p, generator=generator
    )
    prompt_ids = torch.tensor([request.token_ids], device=device)  # (1, T)
    if path is not None and path.decoder is not None:
        check_fits_path(path, request)
        steps = path.generate_step(prompt_ids, sampler=sampler)
    else:
        steps = generate_step(loaded.model, prompt_ids, kv_cache=settings.kv_cache, sampler=sampler)
    detokenizer = StreamingDetokenizer(tokenizer)
    end_tokens = set(loaded.facts.eos_token_ids) if settings.stop_at_eos else set()
    started_ns = None
    try:
        for step in range(request.max_new_tokens):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled(f"the run was cancelled after {step} tokens")
            began_ns = clock()
            started_ns = started_ns or began_ns
            token, logits, cache = next(steps)  # the timed region: one forward pass + sampling
            ended_ns = clock()
            # Recording starts here, outside the timed region.
            token_id = int(token)
            log_probs = torch.log_softmax(logits[0].float(), dim=-1)  # (vocab,)
            top = torch.topk(log_probs, TOP_ALTERNATIVES)
            last = step == request.max_new_tokens - 1 or token_id in end_tokens
            text = detokenizer.add(token_id) + (detokenizer.flush() if last else "")
            yield TokenRecord(
                step=step,
                phase="prefill" if step == 0 else "decode",
                token_id=token_id,
                text=text,
                latency_ms=(ended_ns - began_ns) / 1e6,
                t_ms=(ended_ns - started_ns) / 1e6,
                kv_cache_bytes=kv_cache_bytes(cache),
                memory_bytes=memory_in_use(),
                logprob=float(log_probs[token_id]),
                top=alternatives(tokenizer, top),
                step_tokens=len(request.token_ids) + step if step == 0 or not settings.kv_cache else 1,
            )
            if last:
                return
    finally:
        steps.close()
