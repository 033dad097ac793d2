"""What the kitchen tells about its own work: each step, and a queued request's place (plain data, no torch).

The worker's loop (engine.serving) makes them; the dashboard's server reads them without importing torch, and
engine.schedule turns them into the scheduler's view.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepInfo:
    """One kitchen step as the scheduler's view draws it: when, how long, which tables, how many tokens."""

    index: int
    kind: str  # "prefill" (newcomers read their prompts) or "decode" (every running table gets a token)
    began_s: float  # wall clock (time.time()) when the step began
    ms: float  # the step's timed model work
    tables: tuple[int, ...]  # the requests in the step
    step_tokens: int  # tokens fed to the model (padding not counted)
    waiting: int  # requests queued behind the batch when the step ended
    kv_cache_bytes: int  # the batch's whole cache after the step, padding included

    @property
    def batch_size(self) -> int:
        """Requests in the step."""
        return len(self.tables)


@dataclass(frozen=True)
class QueuePlace:
    """A queued request's place (1 = next) and its estimated wait in seconds (None: not estimable yet)."""

    place: int
    wait_s: float | None
