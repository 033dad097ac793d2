"""The batched kitchen (engine.serving) on the tiny model: joins, leaves, per-request sampling, the cap, the queue."""

from __future__ import annotations

import threading

import pytest

from engine import GenerationSettings, prepare_request, stream_generate
from engine.run import build_trace
from engine.serving import Kitchen, Order, estimated_waits, serve_alone
from engine.trace import Trace

GREEDY = GenerationSettings(max_new_tokens=12, stop_at_eos=False, chat_template=False)
PROMPTS = ["a", "the soup of the day", "bread", "a much longer order, read slowly by the cook"]


def alone(loaded, prompt: str, settings: GenerationSettings = GREEDY) -> list[int]:
    return [record.token_id for record in stream_generate(loaded, prepare_request(loaded, prompt, settings=settings))]


class Table:
    """One test request's order and everything the kitchen told it."""

    def __init__(self, loaded, table: int, prompt: str, settings: GenerationSettings = GREEDY, cancel=None) -> None:
        self.records, self.places, self.ended = [], [], []
        self.order = Order(
            table=table,
            request=prepare_request(loaded, prompt, settings=settings),
            cancel=cancel,
            on_record=self.records.append,
            on_end=lambda order, outcome, error: self.ended.append((outcome, error)),
            on_queue=self.places.append,
        )

    @property
    def tokens(self) -> list[int]:
        return [record.token_id for record in self.records]


def cook(kitchen: Kitchen, *, joining: dict[int, list[Table]] | None = None, limit: int = 500) -> int:
    """Step until idle, adding tables at the given step numbers; returns the number of steps."""
    joining = joining or {}
    steps = 0
    while not kitchen.idle or joining:
        for table in joining.pop(steps, []):
            kitchen.add(table.order)
        kitchen.step()
        steps += 1
        assert steps < limit
    return steps


def cook_every_prompt(loaded, kitchen: Kitchen) -> tuple[list[Table], list[int]]:
    """All of PROMPTS sent at once, cooked to the end: their tables and every step's batch size."""
    tables = [Table(loaded, index, prompt) for index, prompt in enumerate(PROMPTS)]
    for table in tables:
        kitchen.add(table.order)
    sizes: list[int] = []
    kitchen.on_step = lambda info: sizes.append(info.batch_size)
    cook(kitchen)
    return tables, sizes


def test_a_lone_request_gets_the_tokens_and_record_shape_of_the_single_request_loop(tiny):
    request = prepare_request(tiny, "one visitor", settings=GREEDY)
    records = list(serve_alone(tiny, request))
    assert [r.token_id for r in records] == alone(tiny, "one visitor")
    assert [r.batch_size for r in records] == [1] * 12
    assert [r.step_tokens for r in records] == [len(request.token_ids)] + [1] * 11  # prefill, then one per step
    assert [r.step for r in records] == list(range(12))
    per_token = tiny.facts.kv_bytes_per_token
    assert [r.kv_cache_bytes for r in records] == [per_token * (len(request.token_ids) + i) for i in range(12)]
    assert all(later.t_ms > earlier.t_ms for earlier, later in zip(records, records[1:], strict=False))


def test_requests_that_join_and_leave_at_different_steps_get_their_own_answers(tiny):
    kitchen = Kitchen(tiny)
    early = [Table(tiny, index, prompt) for index, prompt in enumerate(PROMPTS[:2])]
    late = [
        Table(tiny, 2, PROMPTS[2]),
        Table(tiny, 3, PROMPTS[3], GenerationSettings(**{**GREEDY.to_dict(), "max_new_tokens": 30})),
    ]
    for table in early:
        kitchen.add(table.order)
    sizes = []
    kitchen.on_step = lambda info: sizes.append((info.kind, info.batch_size, info.kv_cache_bytes))
    cook(kitchen, joining={4: late[:1], 7: late[1:]})
    for table, prompt in zip([*early, *late], PROMPTS, strict=True):
        settings = table.order.request.settings
        assert table.tokens == alone(tiny, prompt, settings), prompt  # padding and neighbours change nothing
        assert table.ended == [("done", None)]
    # batch sizes seen by one request follow the joins and leaves
    first = early[0].records
    assert [r.batch_size for r in first][:6] == [2, 2, 2, 2, 3, 3]
    # the newcomer's prefill step came between its 4th and 5th token: the gap holds both steps, and shows the stall
    newcomer_prefill = late[0].records[0]
    assert first[4].t_ms - first[3].t_ms >= newcomer_prefill.latency_ms + first[4].latency_ms
    assert newcomer_prefill.step_tokens == len(late[0].order.request.token_ids)
    assert max(size for kind, size, _ in sizes if kind == "decode") == 4
    # after the short ones left, the long one cooks alone and the cache holds only its own positions
    last_decode = [entry for entry in sizes if entry[0] == "decode"][-1]
    long_request = late[1].order.request
    assert last_decode[1] == 1
    assert last_decode[2] == tiny.facts.kv_bytes_per_token * (len(long_request.token_ids) + 30 - 1)
    assert kitchen.cache is None  # everyone left: nothing held


def test_each_request_keeps_its_own_sampling_settings_in_one_batch(tiny):
    sampled = GenerationSettings(max_new_tokens=12, stop_at_eos=False, chat_template=False, temperature=1.0, seed=7)
    other_seed = GenerationSettings(**{**sampled.to_dict(), "seed": 8})
    kitchen = Kitchen(tiny)
    tables = [
        Table(tiny, 1, "soup", GREEDY),
        Table(tiny, 2, "soup", sampled),
        Table(tiny, 3, "soup", sampled),
        Table(tiny, 4, "soup", other_seed),
    ]
    for table in tables:
        kitchen.add(table.order)
    cook(kitchen)
    greedy, first, twin, different = (table.tokens for table in tables)
    assert greedy == alone(tiny, "soup")
    assert first == twin == alone(tiny, "soup", sampled)  # the same seed gives the same answer, batched or not
    assert different == alone(tiny, "soup", other_seed) != first
    assert first != greedy  # sampling at temperature 1 on a random model leaves the argmax path


def test_the_batch_cap_queues_the_rest_and_tells_each_its_place_and_wait(tiny):
    kitchen = Kitchen(tiny, max_batch=2)
    tables, sizes = cook_every_prompt(tiny, kitchen)
    assert max(sizes) == 2
    assert all(table.ended == [("done", None)] for table in tables)
    assert [place.place for place in tables[2].places][:1] == [1]
    assert [place.place for place in tables[3].places][:1] == [2]
    assert tables[0].places == [] and tables[1].places == []  # seated at once
    timed = [place for place in tables[3].places if place.wait_s is not None]
    assert timed and all(place.wait_s > 0 for place in timed)  # once a step was timed, the wait is estimated
    for table, prompt in zip(tables, PROMPTS, strict=True):
        assert table.tokens == alone(tiny, prompt)


def test_the_kv_budget_caps_the_batch_before_max_batch_does(tiny):
    one_request = (
        1 * (len(prepare_request(tiny, PROMPTS[3], settings=GREEDY).token_ids) + 12) * tiny.facts.kv_bytes_per_token
    )
    kitchen = Kitchen(tiny, max_batch=8, kv_budget_bytes=one_request + 1)  # room for one row at a time
    tables, sizes = cook_every_prompt(tiny, kitchen)
    assert set(sizes) == {1}
    assert all(table.ended == [("done", None)] for table in tables)


def test_a_stopped_request_leaves_at_the_next_step_and_frees_its_rows(tiny):
    stop = threading.Event()
    settings = GenerationSettings(**{**GREEDY.to_dict(), "max_new_tokens": 40})
    staying, leaving = Table(tiny, 1, PROMPTS[0], settings), Table(tiny, 2, PROMPTS[3], settings, cancel=stop)
    kitchen = Kitchen(tiny)
    kitchen.add(staying.order)
    kitchen.add(leaving.order)
    for _ in range(5):
        kitchen.step()
    assert kitchen.mask.shape[0] == 2
    stop.set()
    kitchen.step()
    assert leaving.ended == [("stopped", "the run was cancelled after 5 tokens")]
    assert len(leaving.records) == 5
    assert kitchen.mask.shape[0] == 1  # its row is gone, and the padding only it needed
    assert kitchen.mask.all()
    cook(kitchen)
    assert staying.tokens == alone(tiny, PROMPTS[0], settings)


def test_a_request_without_the_cache_takes_solo_steps_beside_the_batch(tiny):
    no_cache = GenerationSettings(**{**GREEDY.to_dict(), "kv_cache": False})
    kitchen = Kitchen(tiny)
    cached, uncached = Table(tiny, 1, "bread"), Table(tiny, 2, "bread", no_cache)
    kitchen.add(cached.order)
    kitchen.add(uncached.order)
    cook(kitchen)
    assert uncached.tokens == alone(tiny, "bread", no_cache) == cached.tokens
    prompt_tokens = len(uncached.order.request.token_ids)
    assert [r.step_tokens for r in uncached.records] == [prompt_tokens + i for i in range(12)]  # re-reads it all
    assert {r.batch_size for r in uncached.records} == {1}
    assert {r.kv_cache_bytes for r in uncached.records} == {0}


def test_a_failed_step_fails_every_request_in_flight_with_the_reason(tiny):
    kitchen = Kitchen(tiny)
    tables = [Table(tiny, index, prompt) for index, prompt in enumerate(PROMPTS[:2])]
    for table in tables:
        kitchen.add(table.order)
    kitchen.step()
    kitchen.fail_all("the model failed mid-step: RuntimeError: out of memory")
    assert all(
        table.ended == [("failed", "the model failed mid-step: RuntimeError: out of memory")] for table in tables
    )
    assert kitchen.idle and kitchen.cache is None


def test_a_batched_request_makes_a_valid_trace_that_keeps_its_batch_sizes(tiny):
    kitchen = Kitchen(tiny)
    tables = [Table(tiny, index, prompt) for index, prompt in enumerate(PROMPTS[:3])]
    for table in tables:
        kitchen.add(table.order)
    cook(kitchen)
    trace = build_trace(tiny, tables[1].order.request, tables[1].records, queued_ms=tables[1].order.queued_ms)
    again = Trace.from_dict(trace.to_dict())  # the contract's checks run on load
    assert [r.batch_size for r in again.events] == [r.batch_size for r in tables[1].records]
    assert max(r.batch_size for r in again.events) == 3
    assert again.queued_ms == pytest.approx(tables[1].order.queued_ms)


@pytest.mark.parametrize(
    ("running", "queued", "slots", "expected_s"),
    [
        ([3, 10], [5, 5, 5], 2, [0.3, 0.8, 1.0]),  # the first waits for the 3-token one, the second for its 5 after it
        ([4], [6, 6], 2, [0.0, 0.4]),  # a free slot now, then the 4-token one's
        ([], [2], 1, [0.0]),
    ],
)
def test_estimated_waits_follow_slots_freeing_in_order(running, queued, slots, expected_s):
    assert estimated_waits(running, queued, slots=slots, step_ms=100) == pytest.approx(expected_s)


def test_newcomers_arriving_at_every_round_do_not_starve_the_tables_already_cooking(tiny):
    kitchen = Kitchen(tiny)
    first = Table(tiny, 0, PROMPTS[0])
    kitchen.add(first.order)
    kitchen.step()  # its prefill: the first token
    for index in range(1, 6):  # a newcomer before every round
        kitchen.add(Table(tiny, index, PROMPTS[index % len(PROMPTS)]).order)
        kitchen.step()
        assert len(first.records) == 1 + index  # a prefill step for the newcomer, and still a token for the first
    assert first.tokens == alone(tiny, PROMPTS[0])[: len(first.records)]
