"""The kitchen's scheduler view (engine.schedule): spans, headline figures and each sentence's branches."""

from __future__ import annotations

import pytest

from engine.schedule import (
    gantt_chart,
    kitchen_lesson,
    kitchen_now,
    table_spans,
    traffic_vs_sweep,
)
from engine.steps import StepInfo

T0 = 1_000_000.0


def step(index: int, kind: str, began: float, ms: float, tables: tuple[int, ...], waiting: int = 0) -> StepInfo:
    return StepInfo(index, kind, T0 + began, ms, tables, len(tables), waiting, 0)


# table 1 alone for two steps, table 2 joins (its own prefill step), both decode, table 1 leaves
STEPS = [
    step(1, "prefill", 0.0, 100, (1,)),
    step(2, "decode", 0.1, 50, (1,)),
    step(3, "decode", 0.15, 50, (1,)),
    step(4, "prefill", 0.2, 100, (2,)),
    step(5, "decode", 0.3, 80, (1, 2)),
    step(6, "decode", 0.38, 80, (1, 2), waiting=1),
    step(7, "decode", 0.46, 50, (2,)),
]


def test_spans_give_each_table_its_prefill_and_decode_bars():
    first, second = table_spans(STEPS)
    assert (first.table, first.prefill_start_s, first.prefill_end_s) == (1, T0, pytest.approx(T0 + 0.1))
    assert (first.decode_start_s, first.decode_end_s) == (T0 + 0.1, pytest.approx(T0 + 0.46))
    assert first.tokens == 5  # one per step it was in
    assert (second.prefill_start_s, second.decode_end_s, second.tokens) == (T0 + 0.2, pytest.approx(T0 + 0.51), 4)


def test_a_table_that_has_made_only_its_first_token_has_no_decode_bar():
    (only,) = table_spans(STEPS[:1])
    assert only.decode_start_s is None and only.tokens == 1
    chart = gantt_chart([only], now_s=T0 + 1, window_s=60, mine=1)
    prefill, decode = chart["data"]
    assert prefill["y"] == ["table 1 (you)"] and decode["y"] == []


def test_headline_figures_come_from_the_steps():
    now = kitchen_now(STEPS, now_s=T0 + 0.6)
    assert now.cooking == 1 and now.waiting == 0  # the newest step, under a second ago
    assert now.tables_served == 2 and now.peak_batch == 2
    assert now.step_ms_alone == 50 and now.step_ms_crowded == 80 and now.crowded_batch == 2
    assert now.tokens_per_s == pytest.approx(sum(s.batch_size for s in STEPS) / 0.51)  # 9 tokens over 0.51 s
    idle = kitchen_now(STEPS, now_s=T0 + 5)
    assert idle.cooking == 0  # nothing for seconds: idle, whatever the last step carried


def test_the_lesson_states_slower_dishes_and_more_plates_from_the_step_times():
    lesson = kitchen_lesson(kitchen_now(STEPS, now_s=T0 + 1))
    # 80 ms for 2 tables against 50 ms alone: each dish 1.6x slower, 2 / 1.6 = 1.25x the plates per second
    assert "80 ms against 50 ms" in lesson and "1.6x slower" in lesson and "1.2x as many plates" in lesson


def test_the_lesson_does_not_call_a_crowded_step_slower_when_it_was_not():
    # seen on the Kitchen page: 214 ms for 8 tables against 235 ms alone read "each dish came 0.9x slower"
    steps = [step(1, "decode", 0, 235, (1,)), *(step(i, "decode", 0.3 * i, 214, tuple(range(8))) for i in (2, 3))]
    lesson = kitchen_lesson(kitchen_now(steps, now_s=T0 + 2))
    assert "214 ms, no longer than the 235 ms" in lesson and "8.8x as many plates" in lesson and "slower" not in lesson
    within_noise = [step(1, "decode", 0, 100, (1,)), step(2, "decode", 0.2, 104, (1, 2))]
    assert "no longer than" in kitchen_lesson(kitchen_now(within_noise, now_s=T0 + 1))


def test_the_lesson_with_only_one_table_says_so_and_asks_for_more():
    lesson = kitchen_lesson(kitchen_now(STEPS[:3], now_s=T0 + 1))
    assert lesson.startswith("One cook, one table so far")


def test_the_lesson_without_a_lone_step_quotes_the_crowded_rate_alone():
    crowded_only = [step(1, "prefill", 0, 100, (1, 2)), step(2, "decode", 0.1, 80, (1, 2))]
    lesson = kitchen_lesson(kitchen_now(crowded_only, now_s=T0 + 1))
    assert "took 80 ms" in lesson and "25 plates a second" in lesson and "No step for one table alone" in lesson


SWEEP = [
    {"batch_size": 1, "tokens_per_s": 20.0, "itl_ms": 50.0},
    {"batch_size": 4, "tokens_per_s": 60.0, "itl_ms": 66.0},
    {"batch_size": 16, "tokens_per_s": 150.0, "itl_ms": 107.0},
]


def test_traffic_below_the_sweeps_best_says_there_is_room():
    sentence = traffic_vs_sweep(kitchen_now(STEPS, now_s=T0 + 1), SWEEP)
    assert "carried 2 requests at 80 ms per step: 25 tokens/s" in sentence
    assert "The sweep measured 20 tokens/s at batch 1" in sentence  # nearest measured size to 2 (ties: smaller)
    assert "at batch 16 it made 150 tokens/s" in sentence and "room for a bigger crowd" in sentence


def test_traffic_at_the_sweeps_best_only_compares():
    crowd = [step(1, "prefill", 0, 100, tuple(range(16))), step(2, "decode", 0.1, 100, tuple(range(16)))]
    sentence = traffic_vs_sweep(kitchen_now(crowd, now_s=T0 + 1), SWEEP)
    assert "160 tokens/s" in sentence and "150 tokens/s at batch 16" in sentence and "room" not in sentence


def test_no_traffic_or_no_sweep_says_what_is_missing():
    assert traffic_vs_sweep(kitchen_now([], now_s=T0), SWEEP).startswith("Nobody has used the kitchen")
    assert "no measured batch sizes" in traffic_vs_sweep(kitchen_now(STEPS, now_s=T0 + 1), [])
    prefill_only = [step(1, "prefill", 0, 100, (1,))]
    assert "with no decode step yet" in traffic_vs_sweep(kitchen_now(prefill_only, now_s=T0 + 1), SWEEP)
