"""Replay a recorded trace as it happened: each token at its recorded time, divided by the chosen speed.

No model is needed: the trace holds every token's text, timing, KV bytes and memory. The dashboard keeps a
`ReplayClock` (where the replay is on the recorded clock, and how fast it goes; changing speed mid-replay goes on
from where it is) and asks `records_until` for what has "happened" by now; `replay` is the same schedule as a
blocking generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.records import TokenRecord
from engine.trace import Trace

SPEEDS = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class ReplayClock:
    """A replay's place on its trace's recorded clock: `from_ms` recorded ms had played at `started_s`."""

    started_s: float  # time.monotonic() when this speed took over
    speed: float
    from_ms: float = 0.0

    def recorded_ms(self, now_s: float) -> float:
        """How far into the recording the replay is at `now_s`."""
        return self.from_ms + (now_s - self.started_s) * self.speed * 1000

    def at_speed(self, speed: float, *, now_s: float) -> ReplayClock:
        """The same replay going on from where it is at `now_s`, at another speed."""
        return ReplayClock(started_s=now_s, speed=speed, from_ms=self.recorded_ms(now_s))

    def finished(self, trace: Trace, *, now_s: float) -> bool:
        """True once the replay has reached the trace's last token."""
        return self.recorded_ms(now_s) >= trace.events[-1].t_ms


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
