"""How a text splits into tokens, and how many words each token carries (for the tokenizer view)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import tokenizers

# The common rule of thumb, as the seed article puts it: a token is roughly three quarters of an English word.
RULE_OF_THUMB_WORDS_PER_TOKEN = 0.75


@dataclass(frozen=True)
class TokenPiece:
    """One token of a text: its id and the exact characters it covers ('' for the tail bytes of a split character)."""

    token_id: int
    text: str


def tokenizer_for_pages(tokenizer: object) -> object:
    """What the dashboard's pages tokenize with: a fast tokenizer's own `tokenizers.Tokenizer` (the same ids and
    offsets; reading it needs neither torch nor transformers), else the tokenizer itself."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend if isinstance(backend, tokenizers.Tokenizer) else tokenizer


def count_tokens(tokenizer: object, text: str) -> int:
    """How many tokens a text is (without special tokens), with either kind of tokenizer the pages hold."""
    if isinstance(tokenizer, tokenizers.Tokenizer):
        return len(tokenizer.encode(text, add_special_tokens=False).ids)
    return len(tokenizer.encode(text, add_special_tokens=False))


def split_into_tokens(tokenizer: object, text: str) -> list[TokenPiece]:
    """The text's tokens with the characters each covers (offsets from a fast tokenizer, else per-token decoding)."""
    if isinstance(tokenizer, tokenizers.Tokenizer):
        encoding = tokenizer.encode(text, add_special_tokens=False)
        ids, offsets = encoding.ids, encoding.offsets
    else:
        try:
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        except (NotImplementedError, KeyError, ValueError):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            return [TokenPiece(i, tokenizer.decode([i])) for i in ids]
    pieces, covered = [], 0
    for token_id, (start, end) in zip(ids, offsets, strict=True):
        start = max(start, covered)  # a character split over several tokens is shown once, on its first token
        pieces.append(TokenPiece(token_id, text[start:end] if end > start else ""))
        covered = max(covered, end)
    return pieces


def count_words(text: str) -> int:
    """Words as a reader counts them: runs of letters or digits (apostrophes and hyphens inside a word kept)."""
    return len(re.findall(r"\w+(?:['’-]\w+)*", text))


def words_per_token(text: str, token_count: int) -> float | None:
    """Measured words per token for this text and tokenizer (None for no tokens)."""
    return count_words(text) / token_count if token_count else None


@dataclass(frozen=True)
class TextTokens:
    """How a tokenizer reads a text: its pieces and the measured words per token (None for no tokens)."""

    pieces: tuple[TokenPiece, ...]
    words_per_token: float | None

    @property
    def count(self) -> int:
        """How many tokens the text is."""
        return len(self.pieces)


def read_text(tokenizer: object, text: str) -> TextTokens:
    """The tokenizer view of a text: its token pieces and words per token, measured with this tokenizer."""
    pieces = split_into_tokens(tokenizer, text)
    return TextTokens(tuple(pieces), words_per_token(text, len(pieces)))
