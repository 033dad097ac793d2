"""Mechanics of the instrumented loop on the tiny random Llama: shapes, cache growth, cancel, sampling."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time

import pytest
import torch
from conftest import make_tiny_model
from transformers import DynamicCache

from engine import GenerationCancelled, GenerationSettings, PromptError, SettingsError, prepare_request, run_trace
from engine.errors import EngineError
from engine.generate import (
    StreamingDetokenizer,
    cache_keyword,
    decode_one_token,
    generate_step,
    kv_cache_bytes,
    make_sampler,
    prefill,
    stream_generate,
)

GREEDY_20 = GenerationSettings(max_new_tokens=20, stop_at_eos=False)


def test_prefill_and_decode_shapes_and_cache_growth(tiny):
    ids = torch.tensor([[5, 6, 7, 8, 9]])  # (1, 5)
    cache = DynamicCache(config=tiny.model.config)
    logits = prefill(tiny.model, ids, cache)
    assert logits.shape == (1, tiny.model.config.vocab_size)
    assert cache.get_seq_length() == 5
    logits = decode_one_token(tiny.model, logits.argmax(-1, keepdim=True), cache)
    assert logits.shape == (1, tiny.model.config.vocab_size)
    assert cache.get_seq_length() == 6
    assert kv_cache_bytes(cache) == 6 * tiny.facts.kv_bytes_per_token


def test_kv_bytes_equal_the_formula_exactly_at_every_step(tiny):
    facts = tiny.facts
    assert facts.kv_bytes_per_token == 2 * facts.layers * facts.kv_heads * facts.head_dim * 4  # float32
    trace = run_trace(tiny, "the prep station", settings=GREEDY_20)
    prompt_tokens = len(trace.prompt["tokens"])
    assert [e.kv_cache_bytes for e in trace.events] == [
        facts.kv_bytes_per_token * (prompt_tokens + e.step) for e in trace.events
    ]


def test_records_are_ordered_timed_and_complete(tiny):
    trace = run_trace(tiny, "hello", settings=GREEDY_20)
    events = trace.events
    assert [e.step for e in events] == list(range(20))
    assert [e.phase for e in events] == ["prefill"] + ["decode"] * 19
    assert all(e.latency_ms > 0 for e in events)
    times = [e.t_ms for e in events]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    # wall time since the start includes every step's timed region
    assert all(e.t_ms >= sum(x.latency_ms for x in events[: e.step + 1]) - 1e-6 for e in events)
    assert events[0].t_ms == pytest.approx(events[0].latency_ms)
    for e in events:
        assert len(e.top) == 5
        probs = [alt.prob for alt in e.top]
        assert probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-6
        assert e.logprob <= 0
        assert e.memory_bytes > 0
    # greedy picks the most likely token, whose probability is the top alternative's
    assert all(abs(e.top[0].prob - torch.tensor(e.logprob).exp().item()) < 1e-5 for e in events)


def test_is_a_generator_yielding_records_as_they_are_made(tiny):
    seen = []
    trace = run_trace(
        tiny, "live", settings=GenerationSettings(max_new_tokens=5, stop_at_eos=False), on_record=seen.append
    )
    assert tuple(seen) == trace.events


def test_no_cache_gives_the_same_greedy_tokens_and_holds_no_kv(tiny):
    cached = run_trace(tiny, "same order twice", settings=GREEDY_20)
    uncached = run_trace(tiny, "same order twice", settings=dataclasses.replace(GREEDY_20, kv_cache=False))
    assert [e.token_id for e in uncached.events] == [e.token_id for e in cached.events]
    assert all(e.kv_cache_bytes == 0 for e in uncached.events)


def test_sampling_is_deterministic_per_seed(tiny):
    settings = GenerationSettings(max_new_tokens=30, temperature=1.0, seed=7, stop_at_eos=False)
    first = [e.token_id for e in run_trace(tiny, "dice", settings=settings).events]
    again = [e.token_id for e in run_trace(tiny, "dice", settings=settings).events]
    other = [e.token_id for e in run_trace(tiny, "dice", settings=dataclasses.replace(settings, seed=8)).events]
    greedy = [
        e.token_id for e in run_trace(tiny, "dice", settings=dataclasses.replace(settings, temperature=0.0)).events
    ]
    assert first == again
    assert first != other
    assert first != greedy


def test_top_k_one_and_tiny_top_p_reduce_sampling_to_greedy(tiny):
    greedy = [e.token_id for e in run_trace(tiny, "pick", settings=GREEDY_20).events]
    top_k = [
        e.token_id
        for e in run_trace(
            tiny, "pick", settings=dataclasses.replace(GREEDY_20, temperature=1.5, top_k=1, seed=3)
        ).events
    ]
    top_p = [
        e.token_id
        for e in run_trace(
            tiny, "pick", settings=dataclasses.replace(GREEDY_20, temperature=1.5, top_p=1e-9, seed=3)
        ).events
    ]
    assert top_k == greedy
    assert top_p == greedy


def test_sampler_never_picks_outside_top_k():
    generator = torch.Generator().manual_seed(0)
    logits = torch.arange(10, dtype=torch.float32)[None, :]  # (1, 10): token 9 most likely
    sampler = make_sampler(temperature=5.0, top_k=3, top_p=1.0, generator=generator)
    assert {int(sampler(logits)) for _ in range(200)} == {7, 8, 9}


def test_stops_at_eos_and_reports_why(tiny):
    first = run_trace(tiny, "stop", settings=GREEDY_20).events[2].token_id
    with_eos = dataclasses.replace(tiny, facts=dataclasses.replace(tiny.facts, eos_token_ids=(first,)))
    trace = run_trace(with_eos, "stop", settings=dataclasses.replace(GREEDY_20, stop_at_eos=True))
    assert trace.finish_reason == "eos"
    assert trace.events[-1].token_id == first
    assert len(trace.events) <= 3
    assert run_trace(tiny, "stop", settings=GREEDY_20).finish_reason == "length"


def test_context_window_limits_the_answer():
    small = make_tiny_model(context=40)
    trace = run_trace(small, "x" * 10, settings=GenerationSettings(max_new_tokens=100, stop_at_eos=False))
    prompt_tokens = len(trace.prompt["tokens"])
    assert len(trace.events) == 40 - prompt_tokens
    assert trace.finish_reason == "context"
    with pytest.raises(PromptError, match="reads at most 40"):
        run_trace(small, "x" * 60, settings=GREEDY_20)


def test_cancel_between_steps_keeps_what_was_recorded(tiny):
    cancel = threading.Event()

    def stop_after_three(record):
        if record.step == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled) as caught:
        run_trace(tiny, "cancel me", settings=GREEDY_20, cancel=cancel, on_record=stop_after_three)
    assert [r.step for r in caught.value.records] == [0, 1, 2]
    already = threading.Event()
    already.set()
    with pytest.raises(GenerationCancelled, match="after 0 tokens"):
        run_trace(tiny, "cancel me", settings=GREEDY_20, cancel=already)


def test_split_multibyte_characters_join_back_exactly(tiny):
    text = "naïve café — 😀 中文"
    ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text)  # the byte tokenizer really splits characters
    detokenizer = StreamingDetokenizer(tiny.tokenizer)
    pieces = [detokenizer.add(i) for i in ids] + [detokenizer.flush()]
    assert "".join(pieces) == text
    assert "\ufffd" not in "".join(pieces)
    assert "" in pieces  # incomplete characters were held back
    trace = run_trace(
        tiny, "bytes", settings=GenerationSettings(max_new_tokens=40, temperature=1.0, seed=1, stop_at_eos=False)
    )
    ids_out = [e.token_id for e in trace.events]
    assert trace.answer == tiny.tokenizer.decode(ids_out, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def test_chat_template_switch(tiny):
    chat = prepare_request(tiny, "hi", settings=GenerationSettings())
    raw = prepare_request(tiny, "hi", settings=GenerationSettings(chat_template=False))
    assert chat.chat_template_applied
    assert "<|im_start|>assistant" in chat.rendered
    assert not raw.chat_template_applied
    assert raw.rendered == "hi"
    assert len(raw.token_ids) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (GenerationSettings(max_new_tokens=0), "max_new_tokens must be"),
        (GenerationSettings(max_new_tokens=-3), "max_new_tokens must be"),
        (GenerationSettings(max_new_tokens=10**6), "cap"),
        (GenerationSettings(temperature=-1), "temperature"),
        (GenerationSettings(top_p=0), "top_p"),
        (GenerationSettings(top_k=-1), "top_k"),
        (GenerationSettings(seed=-1), "seed"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(tiny, settings, message):
    with pytest.raises(SettingsError, match=message):
        run_trace(tiny, "hello", settings=settings)


def test_cap_is_configurable(tiny, monkeypatch):
    monkeypatch.setenv("INFERENCE_KITCHEN_MAX_NEW_TOKENS_CAP", "8")
    with pytest.raises(SettingsError, match="cap of 8"):
        run_trace(tiny, "hello", settings=GenerationSettings(max_new_tokens=9))
    assert len(run_trace(tiny, "hello", settings=GenerationSettings(max_new_tokens=8, stop_at_eos=False)).events) == 8


@pytest.mark.parametrize("prompt", ["", "   \n\t", None])
def test_empty_prompt_is_refused(tiny, prompt):
    with pytest.raises(PromptError, match="empty"):
        run_trace(tiny, prompt, settings=GREEDY_20)


def test_huge_prompt_is_refused_before_tokenizing(tiny):
    with pytest.raises(PromptError, match="characters"):
        run_trace(tiny, "word " * 100_000, settings=GREEDY_20)


def test_generate_step_is_plain_model_code(tiny):
    """The step layer yields tokens forever and knows nothing of clocks; closing it is clean."""
    sampler = make_sampler(temperature=0, top_k=0, top_p=1.0, generator=torch.Generator())
    steps = generate_step(tiny.model, torch.tensor([[1, 2, 3]]), kv_cache=True, sampler=sampler)
    tokens = [next(steps)[0] for _ in range(4)]
    steps.close()
    assert all(t.shape == (1, 1) for t in tokens)


def test_a_slow_consumer_never_lands_inside_a_timed_step(tiny):
    """Timing honesty: whatever the caller does with a record happens outside every step's clock."""
    request = prepare_request(tiny, "honest clocks", settings=GenerationSettings(max_new_tokens=8, stop_at_eos=False))
    list(stream_generate(tiny, request))  # warm-up: a first pass in a fresh process pays one-off costs
    records = []
    for record in stream_generate(tiny, request):
        records.append(record)
        time.sleep(0.030)  # a page drawing, a network send: 30 ms per record
    assert len(records) == 8
    for record in records:
        assert record.latency_ms < 30, f"step {record.step} took {record.latency_ms:.1f} ms: the sleep was inside it"
    for earlier, later in itertools.pairwise(records):
        assert later.t_ms - earlier.t_ms >= 30  # the clock kept running between steps, sleep included


def test_the_cache_goes_by_the_name_the_installed_transformers_takes():
    """transformers renamed `past_key_values` to `cache`; passed by a name a version lacks, it was silently dropped."""

    class Newer(torch.nn.Module):
        def forward(self, input_ids, cache=None, use_cache=None, **kwargs): ...

    class Older(torch.nn.Module):
        def forward(self, input_ids, past_key_values=None, use_cache=None, **kwargs): ...

    assert cache_keyword(Newer) == "cache"
    assert cache_keyword(Older) == "past_key_values"


def test_a_model_that_drops_the_cache_is_an_error_not_a_garbled_answer(tiny):
    """Seen with transformers 5.17 on an H200 and here: every token after the first was "-" and the cache 0 bytes."""

    class DropsTheCache(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, cache=None, use_cache=None, **kwargs):
            return self.inner(input_ids=input_ids, use_cache=False, **kwargs)

    ids = torch.tensor([[1, 2, 3, 4]])  # (1, 4)
    cache = DynamicCache(config=tiny.model.config)
    prefill(tiny.model, ids, cache)
    assert cache.get_seq_length() == 4  # the real model fills it
    with pytest.raises(EngineError, match="did not fill the KV cache"):
        prefill(DropsTheCache(tiny.model), ids, DynamicCache(config=tiny.model.config))
