"""The trace contract: vLLM's metric definitions, JSON round-trip, atomic writes, precise errors on bad files."""

from __future__ import annotations

import json
import os

import pytest

from engine import GenerationSettings, TraceFormatError, load_trace, run_trace, save_trace, summarize
from engine.records import Alternative, TokenRecord, percentile
from engine.trace import Trace, write_json_atomic


def record(step: int, t_ms: float, memory: int = 1000) -> TokenRecord:
    return TokenRecord(
        step=step,
        phase="prefill" if step == 0 else "decode",
        token_id=step,
        text=str(step),
        latency_ms=1.0,
        t_ms=t_ms,
        kv_cache_bytes=0,
        memory_bytes=memory,
        logprob=-0.1,
        top=(Alternative(token="a", prob=0.9),),
    )


def test_summary_uses_vllm_definitions_hand_computed():
    records = [record(0, 100.0, 10), record(1, 130.0, 30), record(2, 150.0, 20), record(3, 190.0, 15)]
    summary = summarize(records, prompt_tokens=50)
    assert summary.ttft_ms == 100.0  # first token's time
    assert summary.itl_p50_ms == 30.0  # gaps 30, 20, 40
    assert summary.itl_p90_ms == pytest.approx(38.0)  # 30 + 0.8 * (40 - 30)
    assert summary.tpot_ms == 30.0  # (190 - 100) / (4 - 1)
    assert summary.decode_tokens_per_s == pytest.approx(1000 / 30)
    assert summary.prefill_tokens_per_s == pytest.approx(500.0)  # 50 tokens in 0.1 s
    assert summary.total_ms == 190.0
    assert summary.new_tokens == 4
    assert summary.peak_memory_bytes == 30


def test_summary_of_a_single_token_has_no_decode_figures():
    summary = summarize([record(0, 80.0)], prompt_tokens=8)
    assert summary.ttft_ms == 80.0
    assert summary.tpot_ms is None
    assert summary.itl_p50_ms is None
    assert summary.decode_tokens_per_s is None


def test_percentile_matches_linear_interpolation():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile([0, 10], 90) == 9
    assert percentile([10, 0, 30, 20], 90) == pytest.approx(27.0)  # rank 2.7 of the sorted values, as numpy


@pytest.fixture(scope="module")
def tiny_trace(tiny):
    return run_trace(tiny, "round trip café 😀", settings=GenerationSettings(max_new_tokens=12, stop_at_eos=False))


def test_trace_round_trips_through_json(tiny_trace, tmp_path):
    path = save_trace(tiny_trace, tmp_path / "trace.json")
    loaded = load_trace(path)
    assert loaded == tiny_trace
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("schema_version", "model", "hardware", "versions", "settings", "prompt", "events", "summary"):
        assert key in data
    assert set(data["model"]) >= {"name", "parameters", "dtype", "device", "weight_bytes", "kv_bytes_per_token"}
    assert set(data["versions"]) >= {"torch", "transformers", "python"}
    assert set(data["summary"]) == {
        "ttft_ms",
        "itl_p50_ms",
        "itl_p90_ms",
        "itl_p99_ms",
        "tpot_ms",
        "decode_tokens_per_s",
        "prefill_tokens_per_s",
        "total_ms",
        "peak_memory_bytes",
        "new_tokens",
    }
    assert set(data["events"][0]) == {
        "step",
        "phase",
        "token_id",
        "text",
        "latency_ms",
        "t_ms",
        "kv_cache_bytes",
        "memory_bytes",
        "logprob",
        "top",
        "batch_size",
        "step_tokens",
    }
    assert [event["batch_size"] for event in data["events"]] == [1] * 12  # a lone request
    prompt_tokens = len(data["prompt"]["tokens"])
    assert [event["step_tokens"] for event in data["events"]] == [prompt_tokens] + [1] * 11
    assert set(data["events"][0]["top"][0]) == {"token", "prob"}
    assert data["settings"]["max_new_tokens"] == 12
    assert data["prompt"]["text"] == "round trip café 😀"


def test_a_crash_mid_save_leaves_the_old_file_and_no_debris(tiny_trace, tmp_path, monkeypatch):
    path = save_trace(tiny_trace, tmp_path / "trace.json")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk unplugged")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="unplugged"):
        save_trace(tiny_trace, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.json"]


def test_a_crash_while_writing_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    def crash(fd):  # the bytes are written but not yet on disk, nor renamed into place
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(tmp_path / "new.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def broken(good: dict, change) -> dict:
    data = json.loads(json.dumps(good))
    change(data)
    return data


BROKEN_CASES = {
    "a list": (lambda d: None, "[1, 2]", "JSON list"),
    "truncated": (None, "TRUNCATE", "not valid JSON"),
    "foreign object": (None, '{"hello": "world"}', "not an Inference Kitchen trace"),
    "future schema": (lambda d: d.update(schema_version=99), None, "schema_version 99"),
    "no model name": (lambda d: d["model"].pop("name"), None, "model: the field 'name' is missing"),
    "latency as text": (
        lambda d: d["events"][3].update(latency_ms="fast"),
        None,
        "events[3].latency_ms: expected float",
    ),
    "steps out of order": (lambda d: d["events"].reverse(), None, "events[0].step"),
    "time backwards": (lambda d: d["events"][2].update(t_ms=0.0), None, "events[2].t_ms: time runs backwards"),
    "negative kv": (lambda d: d["events"][1].update(kv_cache_bytes=-5), None, "cannot be negative"),
    "extra field": (lambda d: d["events"][1].update(evil="<script>"), None, "unknown field"),
    "bad alternative": (lambda d: d["events"][1]["top"].append({"token": 1}), None, "events[1].top[5]"),
    "no events": (lambda d: d.update(events=[]), None, "no token records"),
    "summary missing": (lambda d: d["summary"].pop("ttft_ms"), None, "summary: the field 'ttft_ms'"),
    "bool as number": (lambda d: d["events"][0].update(token_id=True), None, "events[0].token_id"),
    "an experiment": (lambda d: d.update(kind="experiment"), None, "not a trace"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_broken_files_give_a_precise_message(tiny_trace, tmp_path, case):
    change, raw, message = BROKEN_CASES[case]
    good_text = json.dumps(tiny_trace.to_dict())
    if raw == "TRUNCATE":
        text = good_text[: len(good_text) // 2]
    elif raw is not None:
        text = raw
    else:
        text = json.dumps(broken(tiny_trace.to_dict(), change))
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TraceFormatError) as caught:
        load_trace(path)
    assert message in str(caught.value)


def test_oversized_and_binary_files_are_refused(tmp_path, monkeypatch):
    import engine.trace

    limit = 64 * 1024 * 1024
    assert limit == engine.trace.MAX_TRACE_FILE_BYTES  # the README's and the upload box's 64 MB
    big = tmp_path / "big.json"
    with open(big, "wb") as sparse:  # one byte over the limit, without writing 64 MB
        sparse.truncate(limit + 1)
    with pytest.raises(TraceFormatError, match="67,108,865 bytes, above the limit of 67,108,864"):
        load_trace(big)  # refused from its size, before a byte is read
    at_limit = tmp_path / "at-limit.json"
    at_limit.write_bytes(b" " * 2048)
    monkeypatch.setattr(engine.trace, "MAX_TRACE_FILE_BYTES", 1024)  # the reader looks the limit up when it reads
    with pytest.raises(TraceFormatError, match="2,048 bytes, above the limit of 1,024"):
        load_trace(at_limit)
    binary = tmp_path / "x.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TraceFormatError, match="not UTF-8"):
        load_trace(binary)
    with pytest.raises(TraceFormatError, match="cannot read"):
        load_trace(tmp_path / "missing.json")


def test_trace_answer_joins_the_texts(tiny_trace):
    assert tiny_trace.answer == "".join(e.text for e in tiny_trace.events)
    assert isinstance(Trace.from_dict(tiny_trace.to_dict()).events[0].top[0], Alternative)


def test_traces_without_the_batch_fields_still_load_and_bad_batch_fields_are_named(tiny_trace):
    import pytest

    from engine.errors import TraceFormatError
    from engine.trace import Trace

    data = tiny_trace.to_dict()
    for event in data["events"]:  # a trace written before the batched kitchen
        del event["batch_size"], event["step_tokens"]
    old = Trace.from_dict(data)
    assert {record.batch_size for record in old.events} == {1} and {r.step_tokens for r in old.events} == {None}
    data["events"][2]["batch_size"] = 0
    with pytest.raises(TraceFormatError, match=r"events\[2\]: batch_size and step_tokens count at least 1"):
        Trace.from_dict(data)
    data["events"][2]["batch_size"] = "8"
    with pytest.raises(TraceFormatError, match=r"events\[2\].batch_size: expected int"):
        Trace.from_dict(data)
    data["events"][2]["batch_size"] = 1
    data["queued_ms"] = -5.0
    with pytest.raises(TraceFormatError, match="queued_ms"):
        Trace.from_dict(data)


def test_a_csv_export_keeps_formula_like_text_as_text(tiny):
    import csv
    import io
    from dataclasses import replace

    from engine.trace import trace_csv

    trace = run_trace(tiny, "soup", settings=GenerationSettings(max_new_tokens=4, stop_at_eos=False))
    hostile = ('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tTAB", "plain")
    events = tuple(replace(event, text=text) for event, text in zip(trace.events, hostile, strict=False))
    rows = list(csv.DictReader(io.StringIO(trace_csv(replace(trace, events=events)))))
    assert [row["text"] for row in rows] == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)"]
    assert float(rows[0]["latency_ms"]) == pytest.approx(trace.events[0].latency_ms)  # numbers stay numbers
