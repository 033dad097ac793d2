"""What every experiment is made of, as its callers see it: options, progress, what it measured (no torch).

The dashboard's server builds options and reads progress without importing torch; engine.experiments.common
holds the helpers that measure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from engine.errors import GenerationCancelled, SettingsError
from engine.request import CancelFlag


@dataclass(frozen=True)
class ExperimentProgress:
    """One progress event for a caller to show: how far (0..1) and what is being measured now."""

    fraction: float
    message: str


class Progress:
    """Reports progress and checks the cancel flag: every report is a point where the experiment may stop.

    An experiment appends each measured row to `rows` (its own list, held here) as soon as it is measured, so a
    stop keeps what was measured before it (run_experiment hands those rows back, marked stopped).
    """

    def __init__(self, on_progress: Callable[[ExperimentProgress], None] | None, cancel: CancelFlag | None) -> None:
        self.on_progress, self.cancel = on_progress, cancel
        self.rows: list[dict] = []

    def __call__(self, fraction: float, message: str) -> None:
        """Say how far the experiment is; raise GenerationCancelled if a stop was asked for."""
        if self.cancel is not None and self.cancel.is_set():
            raise GenerationCancelled(f"the experiment was stopped ({message[0].lower() + message[1:]})")
        if self.on_progress is not None:
            self.on_progress(ExperimentProgress(min(max(fraction, 0.0), 1.0), message))


@dataclass(frozen=True, kw_only=True)
class Measured:
    """What an experiment's `run` returns: one flat row per measured point, its own extra figures, its finding."""

    rows: list[dict]
    details: dict
    finding: str  # one sentence computed from the rows and details


@dataclass(frozen=True, kw_only=True)
class Options:
    """Base of every experiment's options: typed, keyword-only, frozen; `check` refuses impossible ones."""

    def check(self) -> None:
        """Raise SettingsError for options that cannot be run (subclasses add their own rules)."""

    def to_dict(self) -> dict:
        """The options as a JSON-ready dict (stored as the result's settings)."""
        secret = {option.name for option in fields(self) if option.metadata.get("secret")}  # e.g. an API key
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
            if key not in secret
        }


def require_positive(**values: object) -> None:
    """Raise SettingsError unless every given value (or every item of a tuple) is a positive whole number."""
    for name, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        if not items or any(isinstance(item, bool) or not isinstance(item, int) or item < 1 for item in items):
            raise SettingsError(
                f"{name.replace('_', ' ')} must be "
                f"{'a list of ' if isinstance(value, tuple) else ''}positive whole numbers, got {value!r}"
            )
