"""The engine's own exception types: each carries one plain sentence a person can act on."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose (the CLI prints its message, never a traceback)."""


class SettingsError(EngineError):
    """An option is out of range or names something this machine does not have."""


class PromptError(EngineError):
    """The prompt is empty or does not fit the model's context."""


class ModelLoadError(EngineError):
    """A model could not be loaded; the message says why and what to try."""


class TraceFormatError(EngineError):
    """A trace or result file is malformed, truncated or not ours; the message names what is wrong."""


class GenerationCancelled(EngineError):
    """A run was cancelled between two steps; `records` (a generation) or `partial` (an experiment's result,
    marked stopped) holds what was measured before the cancel."""

    def __init__(self, message: str, *, records: tuple = (), partial: object | None = None) -> None:
        super().__init__(message)
        self.records, self.partial = records, partial
