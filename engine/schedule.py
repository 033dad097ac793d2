"""The kitchen's scheduler view, computed from its own step records (engine.serving.StepInfo).

Every bar and figure here is a real step: which tables it carried, when it began and how long its model work
took. Tables are anonymous numbers; no prompt or answer ever reaches this view.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from engine.figures import DECODE_COLOR, PREFILL_COLOR, axis, figure
from engine.steps import StepInfo

RATE_WINDOW_S = 10.0  # aggregate tokens/s is counted over the last this many seconds
SAME_STEP_RATIO = 1.05  # a crowded step within 5% of a lone one (or faster) is "no longer": steps vary that much


@dataclass(frozen=True)
class TableSpan:
    """One request's life in the kitchen, as bars: its prefill step, then its decode steps (first to last)."""

    table: int
    prefill_start_s: float
    prefill_end_s: float
    decode_start_s: float | None  # None: it has made only its first token so far
    decode_end_s: float | None
    tokens: int  # tokens it has made in the window (one per step it was in)


def step_end_s(step: StepInfo) -> float:
    """Wall-clock time when the step's model work ended."""
    return step.began_s + step.ms / 1000


def table_spans(steps: Sequence[StepInfo]) -> list[TableSpan]:
    """Each table seen in `steps`: its prefill bar and its decode bar, in order of arrival."""
    seen: dict[int, dict] = {}
    for step in steps:
        for table in step.tables:
            if table not in seen:
                seen[table] = {"prefill": (step.began_s, step_end_s(step)), "decode": None, "tokens": 0}
                if step.kind == "prefill":
                    seen[table]["tokens"] = 1
                    continue
            span = seen[table]
            start = span["decode"][0] if span["decode"] else step.began_s
            span["decode"], span["tokens"] = (start, step_end_s(step)), span["tokens"] + 1
    return [
        TableSpan(
            table=table,
            prefill_start_s=span["prefill"][0],
            prefill_end_s=span["prefill"][1],
            decode_start_s=span["decode"][0] if span["decode"] else None,
            decode_end_s=span["decode"][1] if span["decode"] else None,
            tokens=span["tokens"],
        )
        for table, span in seen.items()
    ]


@dataclass(frozen=True)
class KitchenNow:
    """Headline figures of the kitchen's recent steps."""

    cooking: int  # requests in the newest step (0 when the kitchen has been idle for a second)
    waiting: int  # requests queued behind the batch after the newest step
    tokens_per_s: float | None  # every table's tokens together, over the last RATE_WINDOW_S seconds of steps
    step_ms_alone: float | None  # median decode step with one table, in the window given
    step_ms_crowded: float | None  # median decode step at the busiest batch size seen
    crowded_batch: int | None  # that batch size
    peak_batch: int
    tables_served: int


def kitchen_now(steps: Sequence[StepInfo], *, now_s: float) -> KitchenNow:
    """What the kitchen is doing now and how its step time grows with the batch, from its recent steps."""
    newest = steps[-1] if steps else None
    recent = newest is not None and now_s - step_end_s(newest) < 1.0
    rated = [step for step in steps if step.began_s >= now_s - RATE_WINDOW_S]
    tokens_per_s = None
    if rated:
        span_s = max(step_end_s(rated[-1]) - rated[0].began_s, 1e-9)
        tokens_per_s = sum(step.batch_size for step in rated) / span_s
    decode_ms: dict[int, list[float]] = {}
    for step in steps:
        if step.kind == "decode":
            decode_ms.setdefault(step.batch_size, []).append(step.ms)
    crowded = max((size for size in decode_ms if size > 1), default=None)
    return KitchenNow(
        cooking=newest.batch_size if recent else 0,
        waiting=newest.waiting if recent else 0,
        tokens_per_s=tokens_per_s,
        step_ms_alone=statistics.median(decode_ms[1]) if 1 in decode_ms else None,
        step_ms_crowded=statistics.median(decode_ms[crowded]) if crowded else None,
        crowded_batch=crowded,
        peak_batch=max((step.batch_size for step in steps), default=0),
        tables_served=len({table for step in steps for table in step.tables}),
    )


def kitchen_lesson(now: KitchenNow) -> str:
    """The restaurant's sentence, from the measured step times: one cook, many tables."""
    if now.crowded_batch is None:
        return (
            "One cook, one table so far: every step in this window cooked for a single request. Open the page in "
            "a few more tabs and press Generate together to watch the cook serve many tables at once."
        )
    plates = now.crowded_batch
    if now.step_ms_alone is None:
        return (
            f"One cook, many tables: a step for {plates} tables took {now.step_ms_crowded:,.0f} ms and served a "
            f"dish to each, {plates / now.step_ms_crowded * 1000:,.0f} plates a second. No step for one table alone "
            "is in this window to compare with."
        )
    slower = now.step_ms_crowded / now.step_ms_alone
    more = plates / slower
    if slower <= SAME_STEP_RATIO:  # the batch was memory-bound: more rows cost no measurable time
        return (
            f"One cook, many tables: a step for {plates} tables took {now.step_ms_crowded:,.0f} ms, no longer than "
            f"the {now.step_ms_alone:,.0f} ms of a step for one table alone, so the kitchen sent out {more:,.1f}x as "
            "many plates per second at no cost to each dish. Reading the weights once serves every table in the step."
        )
    return (
        f"One cook, many tables: a step for {plates} tables took {now.step_ms_crowded:,.0f} ms against "
        f"{now.step_ms_alone:,.0f} ms for one table alone, so each dish came {slower:,.1f}x slower, but the kitchen "
        f"sent out {more:,.1f}x as many plates per second. Reading the weights once serves every table in the step."
    )


def gantt_chart(spans: Sequence[TableSpan], *, now_s: float, window_s: float, mine: int | None = None) -> dict:
    """Each table's prefill and decode as bars against time (seconds before now), newest table on top."""
    labels = [f"table {span.table}" + (" (you)" if span.table == mine else "") for span in spans]
    bars = []
    for kind, color, name in (
        ("prefill", PREFILL_COLOR, "prefill: reading the order"),
        ("decode", DECODE_COLOR, "decode: one token per step"),
    ):
        chosen = [
            (label, span)
            for label, span in zip(labels, spans, strict=True)
            if kind == "prefill" or span.decode_start_s is not None
        ]
        starts = [span.prefill_start_s if kind == "prefill" else span.decode_start_s for _, span in chosen]
        ends = [span.prefill_end_s if kind == "prefill" else span.decode_end_s for _, span in chosen]
        bars.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": name,
                "marker": {"color": color},
                "y": [label for label, _ in chosen],
                "base": [round(start - now_s, 3) for start in starts],
                "x": [round(max(end - start, 0.02), 3) for start, end in zip(starts, ends, strict=True)],
                "customdata": [span.tokens for _, span in chosen],
                "hovertemplate": "%{y}: %{x:.2f} s, %{customdata} tokens<extra></extra>",
            }
        )
    height = max(220, 60 + 26 * len(spans))
    return figure(
        bars,
        x_title="seconds before now",
        y_title="",
        height=height,
        barmode="overlay",
        xaxis=axis("seconds before now", range=[-window_s, 0.5]),
        yaxis={**axis(""), "categoryorder": "array", "categoryarray": labels, "autorange": "reversed"},
    )


def batch_chart(steps: Sequence[StepInfo], *, now_s: float, window_s: float) -> dict:
    """Requests per step and each step's time, against time: the batch grows, the step slows a little."""
    x = [round(step.began_s - now_s, 3) for step in steps]
    return figure(
        [
            {
                "type": "scatter",
                "mode": "lines",
                "line": {"shape": "hv", "color": DECODE_COLOR},
                "name": "requests in the step (batch size)",
                "x": x,
                "y": [step.batch_size for step in steps],
                "hovertemplate": "%{x:.1f} s: %{y} requests<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "markers",
                "marker": {"size": 5, "color": [PREFILL_COLOR if s.kind == "prefill" else "#6C757D" for s in steps]},
                "name": "step time (ms, right axis; orange: a prefill step)",
                "yaxis": "y2",
                "x": x,
                "y": [round(step.ms, 2) for step in steps],
                "hovertemplate": "%{x:.1f} s: %{y:.0f} ms<extra></extra>",
            },
        ],
        x_title="seconds before now",
        y_title="requests in the step",
        height=300,
        xaxis=axis("seconds before now", range=[-window_s, 0.5]),
        yaxis=axis("requests in the step", rangemode="tozero", dtick=1),
        yaxis2={**axis("step time (ms)", rangemode="tozero"), "overlaying": "y", "side": "right", "showgrid": False},
    )


def traffic_vs_sweep(now: KitchenNow, rows: Sequence[dict]) -> str:
    """How the kitchen's last minute of real traffic compares with the batching experiment's sweep (its rows)."""
    if not now.peak_batch:
        return "Nobody has used the kitchen in the last minute, so there is no traffic to compare with the sweep."
    if not rows:
        return "The sweep has no measured batch sizes to compare the kitchen's traffic with."
    batch = now.crowded_batch or 1
    step_ms = now.step_ms_crowded if now.crowded_batch else now.step_ms_alone
    nearest = min(rows, key=lambda row: (abs(row["batch_size"] - batch), row["batch_size"]))
    sweep = (
        f"The sweep measured {nearest['tokens_per_s']:,.0f} tokens/s at batch {nearest['batch_size']} "
        f"({nearest['itl_ms']:,.0f} ms per step)"
    )
    if step_ms is None:
        return (
            f"In the last minute the kitchen cooked up to {batch} requests at once, with no decode step yet. {sweep}."
        )
    real = (
        f"In the last minute the kitchen's busiest decode steps carried {batch} request{'s' if batch > 1 else ''} "
        f"at {step_ms:,.0f} ms per step: {batch / step_ms * 1000:,.0f} tokens/s for all of them together."
    )
    best = max(rows, key=lambda row: row["tokens_per_s"])
    if batch < best["batch_size"]:
        return (
            f"{real} {sweep}; at batch {best['batch_size']} it made {best['tokens_per_s']:,.0f} tokens/s, so this "
            "machine has room for a bigger crowd than it had."
        )
    return f"{real} {sweep}."
