"""The model worker process: loading, streaming records, cancel and errors across the process boundary."""

from __future__ import annotations

import threading
import time

import pytest

from engine import (
    EngineError,
    GenerationCancelled,
    GenerationSettings,
    ModelLoadError,
    PromptError,
    SettingsError,
    load_model,
    run_trace,
)
from engine.worker import ModelWorker


@pytest.fixture(scope="module")
def worker(tiny_folder):
    handle = ModelWorker(str(tiny_folder), device="cpu", dtype="float32", threads=1)
    events = []
    handle.wait_loaded(events.append)
    assert events[-1].stage == "ready"
    assert events[-1].fraction == 1.0
    yield handle
    handle.close()


def test_a_local_folder_loads_like_any_model(tiny_folder):
    loaded = load_model(str(tiny_folder), device="cpu")
    assert loaded.facts.source == "local folder"
    assert loaded.facts.layers == 2


def test_the_worker_streams_the_same_tokens_as_the_engine_in_process(worker, tiny_folder):
    settings = GenerationSettings(max_new_tokens=12, stop_at_eos=False)
    seen, requests = [], []
    trace = worker.generate("same kitchen", settings, on_request=requests.append, on_record=seen.append)
    assert tuple(seen) == trace.events
    assert len(seen) == 12
    assert requests
    assert list(requests[0].token_ids) == trace.prompt["tokens"]
    assert trace.hardware["torch_threads"] == 1  # the worker's own thread setting, recorded where it ran
    local = run_trace(load_model(str(tiny_folder), device="cpu"), "same kitchen", settings=settings)
    assert [e.token_id for e in trace.events] == [e.token_id for e in local.events]


def test_cancel_crosses_the_process_boundary_within_a_few_steps(worker):
    stop, stopped_at = threading.Event(), {}

    def stop_after_two(record):
        if record.step == 1:
            stopped_at.update(count=record.step + 1, when=time.monotonic())
            stop.set()

    with pytest.raises(GenerationCancelled) as caught:
        worker.generate(
            "cancel", GenerationSettings(max_new_tokens=100, stop_at_eos=False), cancel=stop, on_record=stop_after_two
        )
    latency_s = time.monotonic() - stopped_at["when"]
    extra = len(caught.value.records) - stopped_at["count"]
    # The byte goes out as soon as the flag is seen; the worker checks it before each step, so only the steps
    # already in flight may finish (measured here: 0-2 on the tiny model, within a few ms).
    assert 0 <= extra <= 3, f"{extra} records arrived after the stop"
    assert latency_s < 0.5
    # the worker serves the next request normally
    assert len(worker.generate("again", GenerationSettings(max_new_tokens=3, stop_at_eos=False)).events) == 3


def test_a_late_stop_is_ignored_and_a_stop_reaches_only_its_own_request(worker):
    from engine.worker import Stop

    finished_id = next(worker._ids)  # the id of a request that has ended (a late click on Stop)
    worker._send(Stop(finished_id))
    trace = worker.generate("not stopped", GenerationSettings(max_new_tokens=20, stop_at_eos=False))
    assert len(trace.events) == 20
    # two requests in one batch: stopping one leaves the other's answer whole
    stop, other, tables = threading.Event(), {}, []

    def run_other() -> None:
        other["trace"] = worker.generate("keep going", GenerationSettings(max_new_tokens=30, stop_at_eos=False))

    thread = threading.Thread(target=run_other)
    thread.start()
    with pytest.raises(GenerationCancelled):
        worker.generate(
            "stop me",
            GenerationSettings(max_new_tokens=200, stop_at_eos=False),
            cancel=stop,
            on_record=lambda record: record.step == 3 and stop.set(),
            on_table=tables.append,
        )
    thread.join(timeout=60)
    assert len(other["trace"].events) == 30


def test_an_experiment_waits_for_the_batch_to_drain_and_has_the_model_alone(worker):
    from engine.experiments.kv_cache import KvCacheOptions

    steps, tables, seen_at_first_progress = [], [], []
    worker.on_step = steps.append
    generation = {}
    thread = threading.Thread(
        target=lambda: generation.update(
            trace=worker.generate(
                "first come", GenerationSettings(max_new_tokens=60, stop_at_eos=False), on_table=tables.append
            )
        )
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not steps and time.monotonic() < deadline:
        time.sleep(0.005)

    def first_progress(event) -> None:
        if not seen_at_first_progress:  # the reader hands over messages in the worker's order
            seen_at_first_progress.append(sum(1 for step in list(steps) if tables[0] in step.tables))

    worker.experiment("kv-cache", KvCacheOptions(new_tokens=8), on_progress=first_progress)
    thread.join(timeout=60)
    worker.on_step = None
    # every one of the generation's 60 steps came before the experiment's first measurement, and none after
    assert seen_at_first_progress == [60]
    assert sum(1 for step in steps if tables[0] in step.tables) == 60
    assert len(generation["trace"].events) == 60


def test_a_worker_killed_mid_request_raises_a_clear_error(tiny_folder):
    doomed = ModelWorker(str(tiny_folder), device="cpu", dtype="float32", threads=1)
    doomed.wait_loaded()

    def kill_on_second(record):
        if record.step == 1:
            doomed.process.kill()

    settings = GenerationSettings(max_new_tokens=2000, stop_at_eos=False)
    with pytest.raises(EngineError, match="the model worker process stopped unexpectedly"):
        doomed.generate("killed", settings, on_record=kill_on_second)
    doomed.close()
    assert doomed.process.poll() is not None


def test_engine_errors_keep_their_type(worker):
    with pytest.raises(PromptError, match="empty"):
        worker.generate("  ", GenerationSettings())
    with pytest.raises(SettingsError, match="max_new_tokens"):
        worker.generate("hi", GenerationSettings(max_new_tokens=0))


def test_a_model_that_fails_to_load_reports_why():
    handle = ModelWorker("/no/such/model/folder")
    with pytest.raises(ModelLoadError, match="there is no folder at that path"):
        handle.wait_loaded()


def test_an_experiment_runs_in_the_worker_with_progress_and_can_be_stopped(worker):
    from engine.experiments.batch import BatchOptions
    from engine.experiments.kv_cache import KvCacheOptions

    events = []
    result = worker.experiment(
        "batch", BatchOptions(batch_sizes=(1, 2), prompt_tokens=8, decode_tokens=4), on_progress=events.append
    )
    assert result.column("batch_size") == [1, 2]
    assert result.hardware["torch_threads"] == 1
    assert [e.fraction for e in events] == sorted(e.fraction for e in events)
    assert events[-1].fraction == 1.0
    stop = threading.Event()
    with pytest.raises(
        GenerationCancelled, match="the experiment was stopped"
    ) as caught:  # stopped mid-run, between two measurements
        worker.experiment(
            "kv-cache",
            KvCacheOptions(new_tokens=200),
            cancel=stop,
            on_progress=lambda event: event.fraction > 0.1 and stop.set(),
        )
    kept = caught.value.partial  # the points measured before the stop crossed the process boundary too
    assert kept is not None and kept.stopped.startswith("the experiment was stopped")
    # stopped a tenth of the way in, inside the run with the cache (of up to 62 tokens: the context caps it)
    assert 5 <= len(kept.rows) < 62 and all(row["kv_cache"] for row in kept.rows)
    assert kept.finding.startswith(f"Stopped after {len(kept.rows)} measured points")
    with pytest.raises(GenerationCancelled, match="before it started"):
        worker.experiment("prefill", cancel=stop)
    with pytest.raises(SettingsError, match="unknown experiment"):
        worker.experiment("soup")
    assert len(worker.generate("still serving", GenerationSettings(max_new_tokens=3, stop_at_eos=False)).events) == 3


def test_the_worker_tells_the_machine_s_devices_before_it_imports_transformers(tiny_folder):
    from engine.hardware import machine_facts

    handle = ModelWorker(str(tiny_folder), device="cpu", dtype="float32", threads=1)
    try:
        told = handle.machine_facts(timeout_s=60)
        assert not handle.settled.is_set()  # sent once torch is in, a second or more before any model could load
        here = machine_facts()
        assert told.devices == here.devices
        assert told.dtypes == here.dtypes
        assert told.devices[0] in told.hardware
        assert told.hardware["cpu"]["cpu"] == here.hardware["cpu"]["cpu"]
        handle.wait_loaded()
        assert handle.settled.is_set()
    finally:
        handle.close()


def test_an_unknown_decode_path_is_one_sentence_and_the_worker_goes_on(worker):
    settings = GenerationSettings(max_new_tokens=3, stop_at_eos=False)
    with pytest.raises(EngineError, match=r"^the turbo path is unavailable: there is no decode path called 'turbo'"):
        worker.generate("soup", settings, path="turbo")
    assert len(worker.generate("soup", settings).events) == 3


@pytest.mark.slow
def test_a_compiled_path_is_prepared_aside_while_eager_requests_keep_cooking(worker):
    settings = GenerationSettings(max_new_tokens=6, stop_at_eos=False, chat_template=False)
    progress, records, done = [], [], {}

    def on_compiled_path():
        done["trace"] = worker.generate(
            "soup of the day", settings, path="compiled", on_path_progress=progress.append, on_record=records.append
        )

    thread = threading.Thread(target=on_compiled_path)
    thread.start()
    deadline = time.monotonic() + 60
    while not progress and time.monotonic() < deadline:
        time.sleep(0.01)
    assert progress[0] == "Preparing the compiled path"
    eager = worker.generate("soup of the day", settings)  # served by the batch while the path is prepared
    assert not records  # preparing (seconds even from a warm cache: dynamo traces the model) had not ended
    thread.join(timeout=600)
    fast = done["trace"]
    assert progress[-1] == "The compiled path is ready"
    assert fast.path["name"] == "compiled" and eager.path is None
    assert [e.token_id for e in fast.events] == [e.token_id for e in eager.events]  # greedy: the same answer
    assert tuple(records) == fast.events  # every token relayed as it was made
    with pytest.raises(PromptError, match="the compiled path always uses its KV cache"):
        worker.generate("soup", GenerationSettings(max_new_tokens=3, kv_cache=False), path="compiled")


@pytest.mark.slow
def test_a_request_stopped_while_its_path_is_prepared_ends_at_once(tiny_folder):
    worker = ModelWorker(str(tiny_folder), device="cpu", dtype="float32", threads=1)  # its own: preparing goes on
    worker.wait_loaded()
    stop, progress, outcome = threading.Event(), [], {}

    def on_int8_path():
        try:
            worker.generate("soup", GenerationSettings(max_new_tokens=3), path="compiled-int8", cancel=stop,
                            on_path_progress=progress.append)  # fmt: skip
        except GenerationCancelled as err:
            outcome.update(said=str(err), when=time.monotonic())

    thread = threading.Thread(target=on_int8_path)
    thread.start()
    deadline = time.monotonic() + 60
    while not progress and time.monotonic() < deadline:
        time.sleep(0.01)
    pressed = time.monotonic()
    stop.set()
    thread.join(timeout=600)
    worker.close()
    assert outcome["said"] == "stopped before its decode path was ready"
    assert outcome["when"] - pressed < 2  # not after the minutes preparing can take: the stop wakes the worker
