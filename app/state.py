"""What a visitor set on a page, kept while they visit the others.

Streamlit forgets a widget's value at the end of any run that does not draw the widget, so leaving a page and
coming back put every prompt, option and pick back to its default. A page marks the inputs worth keeping with
`remember(key)`; the entry script calls `keep_remembered()` at the top of every run, which makes those values
the session's own (assigned, not just drawn), and Streamlit keeps a value the session owns.
"""

from __future__ import annotations

import streamlit as st

REMEMBERED = "state_remembered_keys"


def remember(key: str) -> str:
    """Mark an input's key as one whose value survives a visit to another page; returns the key."""
    st.session_state.setdefault(REMEMBERED, set()).add(key)
    return key


def keep_remembered() -> None:
    """Take ownership of every remembered value (call once per run, before the page draws)."""
    for key in st.session_state.get(REMEMBERED, ()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def keep_offered(key: str, options: list | tuple) -> None:
    """Before a select widget draws: a kept value no longer offered (or none yet) becomes the first option."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
