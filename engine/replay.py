"""Replay a recorded trace as it happened: each token at its recorded time, divided by the chosen speed.

No model is needed: the trace holds every token's text, timing, KV bytes and memory. The dashboard asks
`records_until` for what has "happened" by now; `replay` is the same schedule as a blocking generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from engine.records import TokenRecord
from engine.trace import Trace

SPEEDS = (0.5, 1.0, 2.0, 4.0)


def replay_seconds(trace: Trace, *, speed: float) -> float:
    """How long the whole replay takes at a speed."""
    return trace.events[-1].t_ms / 1000 / speed


def records_until(trace: Trace, elapsed_s: float, *, speed: float) -> list[TokenRecord]:
    """The records whose recorded time has come after `elapsed_s` seconds of replay at `speed`."""
    horizon_ms = elapsed_s * speed * 1000
    return [record for record in trace.events if record.t_ms <= horizon_ms]


def replay(
    trace: Trace,
    *,
    speed: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[TokenRecord]:
    """Yield the trace's records in recorded order, each when its time (divided by `speed`) has come."""
    if speed <= 0:
        raise ValueError(f"speed must be above 0, got {speed}")
    started = clock()
    for record in trace.events:
        wait = started + record.t_ms / 1000 / speed - clock()
        if wait > 0:
            sleep(wait)
        yield record
