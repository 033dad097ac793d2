"""A prompt checked and tokenized for the kitchen, and what may stop it: plain data, no torch.

The worker prepares a Request (engine.generate.prepare_request) and sends it to the dashboard's server, which
reads it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.errors import PromptError
from engine.settings import GenerationSettings

PROMPT_CHARS_PER_CONTEXT_TOKEN = (
    32  # a prompt longer than this many characters per context token is refused untokenized
)


class CancelFlag(Protocol):
    """Anything with is_set(), checked between steps: a threading.Event, or a dashboard job's own flag."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class Request:
    """A checked prompt, ready to run: the text typed, what the model reads, and its token ids."""

    text: str  # what the person typed
    rendered: str  # what the model reads (chat template applied or not)
    token_ids: tuple[int, ...]
    chat_template_applied: bool
    settings: GenerationSettings
    max_new_tokens: int  # the settings' limit, lowered when the context window has less room left


def check_prompt_text(prompt: object) -> None:
    """Raise PromptError for a prompt that is not text or is empty (checked before anything is loaded)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("the prompt is empty: type a question or some text to continue")
