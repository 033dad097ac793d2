"""Explanation texts from assets/explain/*.md, looked up by section so they can be edited without code."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

EXPLAIN_DIR = Path(__file__).resolve().parent.parent / "assets" / "explain"


@st.cache_data(show_spinner=False)
def sections(page: str) -> dict[str, str]:
    """All '## key' sections of assets/explain/<page>.md, keyed by their heading."""
    found: dict[str, list[str]] = {}
    current = None
    for line in (EXPLAIN_DIR / f"{page}.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {key: "\n".join(lines).strip() for key, lines in found.items()}


def explanation(page: str, key: str, **numbers: object) -> str:
    """One section's text, with {placeholders} filled from measured numbers."""
    text = sections(page)[key]
    return text.format(**numbers) if numbers else text


MARKDOWN_MARKS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:&])")


def literal(text: object) -> str:
    """Text from a run, a file or a visitor, to sit inside Markdown as itself: every mark escaped, so `**`, links,
    images (`![](http://…)` would load a remote picture on the projector), math and HTML show as typed."""
    return MARKDOWN_MARKS.sub(r"\\\1", str(text)).replace("\n", " ")
