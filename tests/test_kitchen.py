"""The shared kitchen (app.kitchen): one real worker process on the tiny model, its queue, stops and failures."""

from __future__ import annotations

import time

import psutil
import pytest

from app.kitchen import ExperimentJob, GenerationJob, ModelSlot, Selection, model_slot, reload_slot
from engine import GenerationSettings
from engine.experiments.kv_cache import KvCacheOptions
from engine.trace import data_dir, load_trace

LONG = GenerationSettings(max_new_tokens=120, stop_at_eos=False)  # the tiny model on 1 thread: well over 0.1 s
ENDLESS = GenerationSettings(max_new_tokens=2000, stop_at_eos=False)  # runs until stopped (the tiny context caps it)


@pytest.fixture(scope="module")
def slot(tiny_folder):
    """A slot serving the tiny model in its own worker process."""
    served = ModelSlot(str(tiny_folder), "cpu", "float32")
    wait_for(lambda: served.state != "loading", what="the tiny model to load", timeout_s=120)
    assert served.state == "ready", served.error
    yield served
    served.close()


def wait_for(condition, *, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def test_concurrent_jobs_cook_together_in_one_batch(slot):
    jobs = [GenerationJob(prompt=f"order {index}", settings=LONG) for index in range(3)]
    for job in jobs:
        slot.submit(job)
    wait_for(lambda: not any(job.active for job in jobs), what="three jobs")
    assert [job.state for job in jobs] == ["done", "done", "done"]
    assert [job.trace.prompt["text"] for job in jobs] == ["order 0", "order 1", "order 2"]  # each got its own
    assert len({job.table for job in jobs}) == 3  # three tables
    # they overlapped: the last to start began before the first ended, and some step carried all three
    assert max(job.started_s for job in jobs) < min(job.ended_s for job in jobs)
    assert max(event.batch_size for job in jobs for event in job.trace.events) == 3
    tables = {job.table for job in jobs}
    assert any(set(step.tables) == tables and step.kind == "decode" for step in slot.recent_steps())


def test_a_second_order_from_one_visitor_is_refused(slot):
    import streamlit as st

    from app.watching import ONE_AT_A_TIME, submit_job

    class Stopped(Exception):
        pass

    first = GenerationJob(prompt="mine", settings=LONG)
    warnings = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(st, "session_state", {"live_job": first})
        patch.setattr(st, "warning", warnings.append)
        patch.setattr(st, "stop", lambda: (_ for _ in ()).throw(Stopped()))
        with pytest.raises(Stopped):
            submit_job(GenerationJob(prompt="and another", settings=LONG), key="batch_job")
    assert warnings == [ONE_AT_A_TIME]


def test_an_experiment_and_a_generation_sent_together_both_finish(slot):
    # that the experiment has the model to itself is checked where the steps are seen (test_worker.py)
    experiment = ExperimentJob(experiment="kv-cache", options=KvCacheOptions(prompt="soup", new_tokens=40))
    generation = GenerationJob(prompt="after the experiment", settings=LONG)
    slot.submit(experiment)
    slot.submit(generation)
    wait_for(lambda: not generation.active and not experiment.active, what="both jobs")
    assert experiment.state == generation.state == "done"
    assert experiment.saved_to is not None
    assert experiment.saved_to.is_file()


def test_stop_while_queued_ends_the_job_before_it_runs_and_saves_nothing(tiny_folder, monkeypatch):
    monkeypatch.setenv("INFERENCE_KITCHEN_MAX_BATCH", "1")  # a batch of one: the second order must queue
    small = ModelSlot(str(tiny_folder), "cpu", "float32")
    wait_for(lambda: small.state == "ready", what="the tiny model to load", timeout_s=120)
    running, queued = GenerationJob(prompt="first", settings=LONG), GenerationJob(prompt="second", settings=LONG)
    small.submit(running)
    wait_for(lambda: running.records, what="the first order's first token")
    small.submit(queued)
    wait_for(lambda: queued.queue_place is not None, what="the second order's place in the queue")
    assert small.ahead_of(queued) == 0 and queued.queue_place.place == 1  # next in line
    assert queued.queue_place.wait_s is not None and queued.queue_place.wait_s > 0  # estimated from step times
    queued.stop_pressed.set()
    wait_for(lambda: not queued.active, what="the queued job")
    assert queued.state == "stopped"
    assert queued.records == []
    assert queued.saved_to is None
    assert running.active  # the other order cooks on
    running.stop_pressed.set()
    small.close()


def test_a_stopped_run_is_saved_with_the_tokens_made_before_the_stop(slot):
    before = set((data_dir() / "traces").glob("*.json"))
    job = GenerationJob(prompt="stop me", settings=GenerationSettings(max_new_tokens=2000, stop_at_eos=False))
    slot.submit(job)
    wait_for(lambda: len(job.records) >= 3, what="three tokens")
    job.stop_pressed.set()
    wait_for(lambda: not job.active, what="the stop")
    assert job.state == "stopped"
    assert set((data_dir() / "traces").glob("*.json")) - before == {job.saved_to}
    kept = load_trace(job.saved_to)
    assert kept.finish_reason == "stopped"
    assert 3 <= len(kept.events) < 2000
    assert [record.token_id for record in kept.events] == [record.token_id for record in job.records]


def test_a_failed_job_does_not_stop_the_slot(slot):
    bad, good = GenerationJob(prompt="   ", settings=LONG), GenerationJob(prompt="still cooking", settings=LONG)
    slot.submit(bad)
    slot.submit(good)
    wait_for(lambda: not good.active, what="both jobs")
    assert bad.state == "failed"
    assert "prompt is empty" in bad.error
    assert good.state == "done"


def test_try_loading_again_closes_the_failed_slot_thread_and_process(monkeypatch):
    selection = Selection(model="/no/such/model/folder", device="cpu", dtype="float32")
    before = children()
    failed = model_slot(selection.model, selection.device, selection.dtype)
    wait_for(lambda: failed.state == "failed", what="the load to fail")
    assert "there is no folder at that path" in failed.error
    reload_slot(selection)  # what the "Try loading again" button does
    assert not failed.thread.is_alive()
    assert failed.worker.process.poll() is not None  # exited, and waited for
    assert children() <= before  # no worker process left behind
    late = GenerationJob(prompt="too late", settings=LONG)
    failed.submit(late)
    assert late.state == "failed"
    again = model_slot(selection.model, selection.device, selection.dtype)
    assert again is not failed  # the next visit starts a fresh slot
    wait_for(lambda: again.state == "failed", what="the second try")
    again.close()
    assert not again.thread.is_alive()


def test_a_killed_worker_fails_the_jobs_in_flight_with_a_sentence_and_the_slot_restarts(tiny_folder):
    doomed = ModelSlot(str(tiny_folder), "cpu", "float32")
    wait_for(lambda: doomed.state == "ready", what="the tiny model to load", timeout_s=120)
    job = GenerationJob(prompt="interrupted", settings=GenerationSettings(max_new_tokens=2000, stop_at_eos=False))
    doomed.submit(job)
    wait_for(lambda: len(job.records) >= 2, what="two tokens")
    other = GenerationJob(prompt="beside it", settings=GenerationSettings(max_new_tokens=2000, stop_at_eos=False))
    doomed.submit(other)
    wait_for(lambda: len(other.records) >= 2, what="the second order's tokens")
    dead = doomed.worker
    dead.process.kill()
    wait_for(lambda: not job.active and not other.active, what="the failures")
    for failed in (job, other):  # every order in flight fails with a sentence
        assert failed.state == "failed"
        assert "worker process stopped" in failed.error and "press the button again" in failed.error
    # the slot starts a new worker by itself, and the next order is served
    wait_for(lambda: doomed.state == "ready" and doomed.worker is not dead, what="the restart", timeout_s=120)
    assert doomed.restarts == 1
    assert dead.process.poll() is not None
    recovered = GenerationJob(prompt="recovered", settings=GenerationSettings(max_new_tokens=4, stop_at_eos=False))
    doomed.submit(recovered)
    wait_for(lambda: not recovered.active, what="the recovered job")
    assert recovered.state == "done"
    assert len(recovered.trace.events) == 4
    doomed.close()


def test_thirty_mixed_runs_leave_no_threads_or_memory_behind(slot, monkeypatch):
    """Finished, stopped and abandoned (closed tab) orders, three at a time: threads and RSS end where they began."""
    import threading

    import app.kitchen

    closed_tabs: set[str] = set()
    monkeypatch.setattr(app.kitchen, "session_alive", lambda session_id: session_id not in closed_tabs)
    worker = psutil.Process(slot.worker.process.pid)

    def three_orders(round_index: int) -> list[GenerationJob]:
        jobs = [
            GenerationJob(prompt=f"done {round_index}", settings=LONG),
            GenerationJob(prompt=f"stopped {round_index}", settings=ENDLESS),
            GenerationJob(prompt=f"closed {round_index}", settings=ENDLESS, session_id=f"tab-{round_index}"),
        ]
        for job in jobs:
            slot.submit(job)
        wait_for(lambda: len(jobs[1].records) >= 2 and len(jobs[2].records) >= 2, what="tokens to arrive")
        jobs[1].stop_pressed.set()
        closed_tabs.add(f"tab-{round_index}")
        wait_for(lambda: not any(job.active for job in jobs), what="the round to end")
        return jobs

    three_orders(-1)  # warm-up: the first batched round allocates what later rounds reuse
    threads_before, rss_before = threading.active_count(), worker.memory_info().rss
    outcomes = [job.state for round_index in range(10) for job in three_orders(round_index)]
    wait_for(lambda: threading.active_count() <= threads_before, what="job threads to end", timeout_s=10)
    rss_growth = worker.memory_info().rss - rss_before
    print(
        f"30 mixed runs: threads {threads_before} -> {threading.active_count()}, worker RSS {rss_growth / 1e6:+.1f} MB"
    )
    assert outcomes == ["done", "stopped", "stopped"] * 10
    assert threading.active_count() == threads_before  # every job's thread ended
    assert slot.active_jobs() == []
    # measured +0.4 MB; the tiny model's KV cache for three full orders is ~0.2 MB, so 30 runs' worth kept would
    # show, and allocator noise here is a few MB
    assert rss_growth < 8e6
