"""The dashboard's pages, in one place: the sidebar navigation and the links between pages are built from it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from engine.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parent.parent

PAGES = {  # key: (file in pages/, title, icon); the experiments' pages come from the engine's registry
    "live": ("live.py", "Live inference", "🔥"),
    "kitchen": ("kitchen.py", "The kitchen", "🧑‍🍳"),
    "runs": ("runs.py", "Runs", "🗂️"),
    "restaurant": ("restaurant.py", "The restaurant", "🍴"),
    "costs": ("costs.py", "What it costs", "💵"),
    **{name: experiment.page for name, experiment in EXPERIMENTS.items() if experiment.page is not None},
}
SECTIONS = {
    "Watch it cook": ["live", "kitchen", "runs"],
    "Explained": ["restaurant", "costs"],
    "Experiments: why it behaves so": [name for name, experiment in EXPERIMENTS.items() if experiment.page is not None],
}


HOME = "live"  # the page at "/"; it also answers at its own path (/live), like every page


def page(key: str) -> st.Page:
    """The st.Page for a page key (its URL path is the key)."""
    file, title, icon = PAGES[key]
    return st.Page(ROOT / "pages" / file, title=title, icon=icon, url_path=key)


def go_home() -> None:
    """The page at "/": it opens the HOME page at its own path, so the menu shows where the visitor is."""
    st.switch_page(page(HOME))


def home_page() -> st.Page:
    """The page served at "/" and left out of the menu (Streamlit ignores a default page's own path)."""
    return st.Page(go_home, title=PAGES[HOME][1], url_path="home", default=True, visibility="hidden")


def navigation_pages() -> dict[str, list[st.Page]]:
    """The sidebar's sections and their pages, the hidden home page first."""
    sections = {section: [page(key) for key in keys] for section, keys in SECTIONS.items()}
    first = next(iter(sections))
    sections[first] = [home_page(), *sections[first]]
    return sections


def link(key: str, label: str) -> None:
    """A link to another page of the dashboard (works when a page runs alone, as in tests)."""
    st.page_link(page(key), label=label, icon=PAGES[key][2])
