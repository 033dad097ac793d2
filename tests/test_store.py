"""The run store, import checks, replay timing and the HTML report, on runs of the tiny model."""

from __future__ import annotations

import html
import json
import os
from dataclasses import replace

import pytest
from conftest import SMALL, make_tiny_model
from test_cli import engine_cli

from engine import GenerationSettings, TraceFormatError, run_trace, save_trace
from engine.experiments import run_experiment, save_result
from engine.experiments.result import default_result_path
from engine.replay import ReplayClock, records_until, replay, replay_seconds
from engine.report import compare_summaries, render_report, run_name, run_names
from engine.store import REFERENCE_DIR, RunStore, check_run_dict, load_run
from engine.trace import Trace, default_trace_path, read_json, write_json_atomic


@pytest.fixture(scope="module")
def tiny_runs():
    """Two traces and a result of the tiny model, in memory."""
    tiny = make_tiny_model(context=512)
    first = run_trace(tiny, "soup of the day", settings=GenerationSettings(max_new_tokens=12, stop_at_eos=False))
    second = run_trace(tiny, "bread", settings=GenerationSettings(max_new_tokens=20, stop_at_eos=False, kv_cache=False))
    return first, second, run_experiment(tiny, "batch", SMALL["batch"])


@pytest.fixture
def store(tiny_runs):
    """A store holding the two traces and the result."""
    first, second, result = tiny_runs
    save_trace(first, default_trace_path())
    save_trace(second, default_trace_path())
    save_result(result, default_result_path("batch"))
    return RunStore()


def test_the_store_lists_what_was_saved_newest_first_with_headlines(store, tiny_runs):
    entries, problems = store.list()
    assert problems == []
    assert len(entries) == 3
    assert [e.created_at for e in entries] == sorted((e.created_at for e in entries), reverse=True)
    traces = {e.headline["tokens"]: e for e in entries if e.kind == "trace"}
    assert set(traces) == {12, 20}
    assert traces[12].prompt_start == "soup of the day"
    assert traces[20].headline["decode_tokens_per_s"] == pytest.approx(tiny_runs[1].summary.decode_tokens_per_s)
    assert (store.root / "index.json").is_file()
    opened = store.open(traces[12].path)
    assert opened.answer == tiny_runs[0].answer
    assert opened.events == tiny_runs[0].events  # round trip


def test_the_index_spares_parsing_unchanged_files(store, monkeypatch):
    store.list()
    import engine.store as module

    original = module.read_json

    def only_the_index(path):
        if path.name not in ("index.json", "labels.json", "access.json"):
            pytest.fail(f"{path} was parsed again")
        return original(path)

    monkeypatch.setattr(module, "read_json", only_the_index)
    entries, _ = store.list()  # all from index.json: same sizes and modification times
    assert len(entries) == 3


def test_labels_and_deletes(store):
    entries, _ = store.list()
    target = entries[-1].path
    store.set_label(target, "  the slow one  ")
    assert {e.path: e.label for e in store.list()[0]}[target] == "the slow one"
    store.set_label(target, "")
    assert {e.path: e.label for e in store.list()[0]}[target] == ""
    store.set_label(target, "doomed")
    store.delete(target)
    assert target not in {e.path for e in store.list()[0]}
    assert target not in store.labels()


def test_two_sessions_labelling_200_runs_each_keep_all_400_labels(store, tiny_runs):
    import threading

    first = tiny_runs[0]
    paths = [save_trace(first, store.root / "traces" / f"trace-many-{index:03d}.json") for index in range(400)]
    names = [f"traces/{path.name}" for path in paths]

    def label(names: list[str], who: str) -> None:
        for name in names:
            RunStore(store.root).set_label(name, f"{who} {name}")  # each session its own store object, as pages do

    sessions = [threading.Thread(target=label, args=(names[half::2], f"session {half}")) for half in (0, 1)]
    for session in sessions:
        session.start()
    for session in sessions:
        session.join()
    labels = store.labels()
    assert len(labels) == 400
    assert all(labels[name] == f"session {index % 2} {name}" for index, name in enumerate(names))


def test_a_delete_while_another_session_lists_raises_nothing(store, tiny_runs, monkeypatch):
    for index in range(20):
        save_trace(tiny_runs[0], store.root / "traces" / f"trace-gone-{index:02d}.json")
    entries, _ = store.list()
    victims = [entry.path for entry in entries if "gone" in entry.path]
    (store.root / "index.json").unlink()  # every file is read again while listing
    real_glob = type(store.root).glob

    def glob_then_delete(self, pattern):
        found = list(real_glob(self, pattern))
        for victim in victims:  # another visitor deletes them after this one's listing found them
            RunStore(store.root).delete(victim)
        return iter(found)

    monkeypatch.setattr(type(store.root), "glob", glob_then_delete)
    entries, problems = store.list()
    assert problems == []
    assert not {entry.path for entry in entries} & set(victims)
    assert len(entries) == 3


@pytest.mark.parametrize(
    "relative", ["../secrets.json", "traces/../../x.json", "traces/", "elsewhere/x.json", "traces/.hidden.json"]
)
def test_paths_outside_the_store_are_refused(store, relative):
    with pytest.raises(TraceFormatError, match="is not a run in this store"):
        store.delete(relative)


def test_a_corrupt_file_is_reported_and_skipped(store):
    (store.root / "traces" / "trace-20990101-000000-000000.json").write_text('{"schema_version": 1, "events": [')
    (store.root / "experiments" / "batch-20990101-000000-000000.json").write_bytes(b"\xff\xfe not text")
    (store.root / "index.json").write_text("{ broken")  # the cache too
    entries, problems = store.list()
    assert len(entries) == 3
    assert len(problems) == 2
    assert any("not valid JSON" in p and "truncated" in p for p in problems)
    assert any("not UTF-8" in p for p in problems)


def test_a_crash_mid_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"version": "old"})

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)  # the crash: after writing the new bytes, before the rename
    with pytest.raises(OSError, match="power cut"):
        write_json_atomic(path, {"version": "new", "padding": "x" * 100_000})
    monkeypatch.undo()
    assert read_json(path) == {"version": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no half-written temporary left behind

    class Unserializable:
        pass

    with pytest.raises(TypeError):  # a crash while the JSON is being written
        write_json_atomic(path, {"version": "new", "bad": Unserializable()})
    assert read_json(path) == {"version": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def broken_files(trace: dict) -> list[tuple[str, bytes, str]]:
    """(name, bytes, expected message) for files an import must refuse."""
    backwards = json.loads(json.dumps(trace))
    backwards["events"][3]["t_ms"] = 0.0
    negative = json.loads(json.dumps(trace))
    negative["events"][0]["latency_ms"] = -1
    wrong_version = {**trace, "schema_version": 99}
    missing = {key: value for key, value in trace.items() if key != "summary"}
    # seen: a summary claiming a 1.0 ms TTFT over events that replay a 343 ms one
    flattering = {**trace, "summary": {**trace["summary"], "ttft_ms": trace["events"][0]["t_ms"] / 343}}
    understated = {**trace, "summary": {**trace["summary"], "peak_memory_bytes": 1}}
    hostile_row = {
        "schema_version": 1,
        "kind": "experiment",
        "experiment": "batch",
        "created_at": "x",
        "model": {},
        "hardware": {},
        "versions": {},
        "settings": {},
        "finding": "f",
        "rows": [{"batch_size": 1, "tokens_per_s": 1.0, "itl_ms": 1.0, "kv_cache_bytes": 1, "x": {"__class__": 1}}],
    }
    text = json.dumps(trace)
    return [
        ("truncated.json", text[: len(text) // 2].encode(), "is not valid JSON"),
        ("empty.json", b"", "is not valid JSON"),
        ("binary.json", b"\x89PNG\r\n\x1a\n", "is not UTF-8"),
        ("list.json", b"[1, 2, 3]", "holds a JSON list"),
        ("version.json", json.dumps(wrong_version).encode(), "schema_version 99 is not supported"),
        ("backwards.json", json.dumps(backwards).encode(), r"events\[3\].t_ms: time runs backwards"),
        ("negative.json", json.dumps(negative).encode(), "cannot be negative"),
        ("missing.json", json.dumps(missing).encode(), "'summary' is missing"),
        ("nested.json", json.dumps(hostile_row).encode(), "result.model: the field 'name' is missing"),
        ("nan.json", text.replace('"ttft_ms": ', '"ttft_ms": NaN, "x": ', 1).encode(), "holds NaN"),
        ("flattering.json", json.dumps(flattering).encode(), r"summary.ttft_ms says \S+ but the events give"),
        ("understated.json", json.dumps(understated).encode(), "summary.peak_memory_bytes says 1 but its events"),
    ]


def test_imports_of_broken_files_are_refused_precisely_and_change_nothing(store, tiny_runs):
    before = sorted(p.name for folder in ("traces", "experiments") for p in (store.root / folder).iterdir())
    labels = store.labels()
    for name, raw, message in broken_files(tiny_runs[0].to_dict()):
        with pytest.raises(TraceFormatError, match=message):
            store.import_bytes(raw, filename=name)
    with pytest.raises(TraceFormatError, match="above the limit"):
        store.import_bytes(b" " * (64 * 1024 * 1024 + 1), filename="huge.json")
    after = sorted(p.name for folder in ("traces", "experiments") for p in (store.root / folder).iterdir())
    assert after == before
    assert store.labels() == labels


def test_a_good_import_becomes_a_labelled_run(store, tiny_runs):
    relative = store.import_bytes(json.dumps(tiny_runs[1].to_dict()).encode(), filename="/home/someone/h100-run.json")
    assert relative.startswith("traces/")
    assert store.labels()[relative] == "imported from h100-run.json"
    assert store.open(relative).events == tiny_runs[1].events


def test_replay_emits_records_in_order_at_their_recorded_times(tiny_runs):
    trace = tiny_runs[1]
    now = {"t": 100.0}
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now["t"] += seconds

    for speed in (0.5, 1.0, 2.0, 4.0):
        now["t"], seen = 100.0, []
        for record in replay(trace, speed=speed, clock=lambda: now["t"], sleep=sleep):
            seen.append((record.step, now["t"] - 100.0))
        assert [step for step, _ in seen] == list(range(len(trace.events)))
        for (_step, at), record in zip(seen, trace.events, strict=True):
            assert at == pytest.approx(record.t_ms / 1000 / speed)
        assert replay_seconds(trace, speed=speed) == pytest.approx(trace.events[-1].t_ms / 1000 / speed)


def test_replay_in_real_time_keeps_the_recorded_rhythm(tiny_runs):
    import time

    trace = tiny_runs[1]
    speed = trace.events[-1].t_ms / 1000 / 0.4  # the whole replay in 0.4 s
    began, lateness = time.monotonic(), []
    for record in replay(trace, speed=speed):
        lateness.append(time.monotonic() - began - record.t_ms / 1000 / speed)
    assert all(-0.001 < late < 0.05 for late in lateness), lateness  # never early, at most 50 ms late on a busy box
    assert records_until(trace, 0.0, speed=1.0) == [] or records_until(trace, 0.0, speed=1.0)[0].t_ms == 0
    assert records_until(trace, 10**6, speed=1.0) == list(trace.events)
    middle = trace.events[len(trace.events) // 2]
    at_middle = records_until(
        trace, middle.t_ms / 1000 / 2 + 1e-9, speed=2.0
    )  # (1e-9 s: float rounding of the division)
    assert at_middle[-1] == middle
    assert len(at_middle) == len(trace.events) // 2 + 1


def test_a_replay_clock_changes_speed_without_a_jump():
    clock = ReplayClock(started_s=10.0, speed=0.5)
    assert clock.recorded_ms(12.0) == pytest.approx(1000.0)  # 2 s at x0.5
    faster = clock.at_speed(4.0, now_s=12.0)
    assert faster.recorded_ms(12.0) == pytest.approx(clock.recorded_ms(12.0))  # same place at the switch
    assert faster.recorded_ms(13.0) == pytest.approx(1000.0 + 4000.0)  # then 4 recorded s per second


def test_a_comparison_puts_ratios_beside_the_figures(tiny_runs):
    first, second, _ = tiny_runs
    rows = {row["figure"]: row for row in compare_summaries([first, second])}
    assert rows["new tokens"]["run 1"] == "12"
    assert rows["new tokens"]["run 2"] == "20"
    assert rows["new tokens"]["run 2 ÷ run 1"] == f"{20 / 12:.2f}x"


def test_the_html_report_is_self_contained(tiny_runs, tmp_path):
    first, second, result = tiny_runs
    page = render_report([first, second, result], title="Tiny <b>comparison</b>")
    assert page.startswith("<!DOCTYPE html>")
    assert "Tiny &lt;b&gt;comparison&lt;/b&gt;" in page
    assert page.count("Plotly.newPlot") == 5  # the five overlays (latency, tokens, KV cache, memory, batch size)
    assert "<script src=" not in page  # plotly.js inline, nothing fetched (the browser test opens it offline)
    assert len(page) > 1_000_000
    assert html.escape(result.finding) in page


def test_the_cli_validates_and_reports(tiny_runs, tmp_path):
    first, second, result = tiny_runs
    paths = [
        save_trace(first, tmp_path / "a.json"),
        save_trace(second, tmp_path / "b.json"),
        save_result(result, tmp_path / "c.json"),
    ]
    for path in paths:
        outcome = engine_cli("validate", str(path))
        assert outcome.returncode == 0
        assert outcome.stdout.startswith("valid:")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**first.to_dict(), "finish_reason": "bored"}))
    outcome = engine_cli("validate", str(bad))
    assert outcome.returncode == 2
    assert "finish_reason: expected one of" in outcome.stderr
    out = tmp_path / "report.html"
    outcome = engine_cli("report", *map(str, paths), "--out", str(out))
    assert outcome.returncode == 0
    assert out.read_text().count("Plotly.newPlot") == 5
    outcome = engine_cli("report", str(paths[0]), str(bad), "--out", str(tmp_path / "never.html"))
    assert outcome.returncode == 2
    assert not (tmp_path / "never.html").exists()


def test_every_shipped_reference_run_is_valid_and_says_where_it_came_from():
    files = sorted(REFERENCE_DIR.glob("*.json"))
    assert files, "assets/traces ships at least one reference trace"
    kinds = set()
    for path in files:
        data = read_json(path)
        check_run_dict(data)  # a trace's summary is also checked against its events
        assert len(data["reference_note"]) > 40
        assert data["hardware"]
        run = load_run(path)
        kinds.add(data.get("kind"))
        if isinstance(run, Trace):
            assert len(run.events) >= 32
            assert run.events[-1].kv_cache_bytes > 0  # recorded with a working cache (not the dropped-cache bug)
        else:
            assert run.rows and run.finding
    assert "trace" in kinds
    assert len(RunStore().references()) == len(files)  # none is skipped as unreadable
    assert {e.path.split("/")[0] for e in RunStore().references()} == {"reference"}
    with pytest.raises(TraceFormatError, match="cannot be changed"):
        RunStore().delete(f"reference/{files[0].name}")


def test_compared_runs_are_named_by_what_differs(tiny_runs):
    """Seen: runs differing only in the KV cache or temperature were labelled identically in compare and report."""
    first, second, _ = tiny_runs
    names = run_names([first, second])
    assert names[0].startswith("run 1: ") and names[1].startswith("run 2: ")
    assert "KV cache on" in names[0] and "KV cache off" in names[1]  # what differs is named
    assert "“soup of the day" in names[0] and "max 12 tokens" in names[0] and "max 20 tokens" in names[1]
    assert first.model["name"] not in names[0]  # what is the same is left out
    warm = replace(first, settings={**first.settings, "temperature": 0.7})
    assert run_names([first, warm]) == ["run 1: greedy", "run 2: temperature 0.7"]
    twin = replace(first, created_at=first.created_at[:11] + "23:59:59" + first.created_at[19:])
    alike = run_names([first, twin])
    assert alike[0] != alike[1] and alike[1].endswith("23:59:59")  # alike in every facet: the time tells them apart
    assert run_names([first]) == [f"run 1: {run_name(first)}"]
