"""The shared kitchen (app.kitchen): one real worker process on the tiny model, its queue, stops and failures."""

from __future__ import annotations

import time

import psutil
import pytest

from app.kitchen import ExperimentJob, GenerationJob, ModelSlot, Selection, model_slot, reload_slot
from engine import GenerationSettings
from engine.experiments.kv_cache import KvCacheOptions
from engine.trace import data_dir

LONG = GenerationSettings(max_new_tokens=120, stop_at_eos=False)  # the tiny model on 1 thread: well over 0.1 s


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


def test_jobs_run_one_at_a_time_in_arrival_order(slot):
    jobs = [GenerationJob(prompt=f"order {index}", settings=LONG) for index in range(3)]
    for job in jobs:
        slot.submit(job)
    assert [slot.ahead_of(job) for job in jobs] == [0, 1, 2]  # the first is running (or about to)
    wait_for(lambda: not any(job.active for job in jobs), what="three jobs")
    assert [job.state for job in jobs] == ["done", "done", "done"]
    for earlier, later in zip(jobs, jobs[1:], strict=False):
        assert later.started_s >= earlier.ended_s  # never two at once, and first come, first served
    assert [job.trace.prompt["text"] for job in jobs] == ["order 0", "order 1", "order 2"]


def test_an_experiment_never_overlaps_a_generation(slot):
    experiment = ExperimentJob(experiment="kv-cache", options=KvCacheOptions(prompt="soup", new_tokens=40))
    generation = GenerationJob(prompt="after the experiment", settings=LONG)
    slot.submit(experiment)
    slot.submit(generation)
    wait_for(lambda: not generation.active, what="both jobs")
    assert experiment.state == generation.state == "done"
    assert generation.started_s >= experiment.ended_s
    assert experiment.saved_to is not None
    assert experiment.saved_to.is_file()


def test_stop_while_queued_ends_the_job_before_it_runs_and_saves_nothing(slot):
    running, queued = GenerationJob(prompt="first", settings=LONG), GenerationJob(prompt="second", settings=LONG)
    slot.submit(running)
    slot.submit(queued)
    assert slot.ahead_of(queued) == 1
    queued.stop_pressed.set()
    wait_for(lambda: not queued.active, what="the queued job")
    assert queued.state == "stopped"
    assert queued.records == []
    assert queued.saved_to is None
    assert queued.started_s is None  # it never reached the model


def test_a_stopped_run_is_not_saved(slot):
    before = set((data_dir() / "traces").glob("*.json"))
    job = GenerationJob(prompt="stop me", settings=GenerationSettings(max_new_tokens=2000, stop_at_eos=False))
    slot.submit(job)
    wait_for(lambda: len(job.records) >= 3, what="three tokens")
    job.stop_pressed.set()
    wait_for(lambda: not job.active, what="the stop")
    assert job.state == "stopped"
    assert job.saved_to is None
    assert set((data_dir() / "traces").glob("*.json")) == before


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


def test_a_killed_worker_fails_the_running_job_with_a_sentence_and_a_new_slot_recovers(tiny_folder):
    doomed = ModelSlot(str(tiny_folder), "cpu", "float32")
    wait_for(lambda: doomed.state == "ready", what="the tiny model to load", timeout_s=120)
    job = GenerationJob(prompt="interrupted", settings=GenerationSettings(max_new_tokens=2000, stop_at_eos=False))
    doomed.submit(job)
    wait_for(lambda: len(job.records) >= 2, what="two tokens")
    doomed.worker.process.kill()
    wait_for(lambda: not job.active, what="the failure")
    assert job.state == "failed"
    assert "the model worker process stopped unexpectedly" in job.error
    after = GenerationJob(prompt="next", settings=LONG)
    doomed.submit(after)
    wait_for(lambda: not after.active, what="the next job")
    assert after.state == "failed"
    assert "stopped" in after.error
    doomed.close()
    fresh = ModelSlot(str(tiny_folder), "cpu", "float32")
    wait_for(lambda: fresh.state == "ready", what="the new slot", timeout_s=120)
    recovered = GenerationJob(prompt="recovered", settings=GenerationSettings(max_new_tokens=4, stop_at_eos=False))
    fresh.submit(recovered)
    wait_for(lambda: not recovered.active, what="the recovered job")
    assert recovered.state == "done"
    assert len(recovered.trace.events) == 4
    fresh.close()
