"""Presentation mode: a sidebar switch for projecting on a wall: larger type and charts, settings tucked away."""

from __future__ import annotations

import streamlit as st

from engine.figures import PLOT_CONFIG

KEY = "sidebar_presentation"
CHART_SCALE = 1.45  # chart height and font in presentation mode
BASE_FONT = 14  # px, every chart text outside presentation mode
STYLE = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 21px; }
[data-testid="stMainBlockContainer"], .block-container {
  max-width: 100% !important; padding-left: 2rem; padding-right: 2rem; padding-top: 2.5rem !important;
}
[data-testid="stTextArea"] textarea, [data-testid="stTextInput"] input, [data-testid="stNumberInput"] input {
  font-size: 1.05rem !important;
}
h1 { font-size: 3.1rem !important; }
[data-testid="stMetricValue"] { font-size: 2.6rem !important; }
.ik-chips { font-size: 1.6rem !important; }
</style>
"""


def presenting() -> bool:
    """True while presentation mode is on for this visitor."""
    return bool(st.session_state.get(KEY, False))


def apply_style() -> None:
    """Emit the larger-type stylesheet when presenting (call once per page run)."""
    if presenting():
        st.html(STYLE)


def settings_area(label: str = "Settings"):
    """Where a page draws its settings: in plain view normally, folded away when presenting."""
    return st.expander(label, expanded=False) if presenting() else st.container()


def sized_fonts(layout: dict, *, size: float) -> dict:
    """A plotly layout with every text at `size` px (titles a bit larger), set where Streamlit's theme can't override.

    Streamlit's chart theme sets tick labels and legends to its own 12 px whatever layout.font says, so each
    axis, the legend, the title and every annotation get an explicit size here.
    """
    sized = {**layout, "font": {**layout.get("font", {}), "size": size}}
    for name, axis in layout.items():
        if (name.startswith("xaxis") or name.startswith("yaxis")) and isinstance(axis, dict):
            title = axis.get("title", {})
            title = {"text": title} if isinstance(title, str) else title
            sized[name] = {
                **axis,
                "tickfont": {**axis.get("tickfont", {}), "size": size},
                "title": {**title, "font": {**title.get("font", {}), "size": size * 1.1}},
            }
    sized["legend"] = {**layout.get("legend", {}), "font": {**layout.get("legend", {}).get("font", {}), "size": size}}

    def scaled(font: dict) -> dict:  # a text with its own size keeps its proportion to the rest
        return {**font, "size": font.get("size", BASE_FONT) * size / BASE_FONT}

    if isinstance(layout.get("title"), dict):
        sized["title"] = {**layout["title"], "font": scaled(layout["title"].get("font", {}))}
    sized["annotations"] = [{**note, "font": scaled(note.get("font", {}))} for note in layout.get("annotations", [])]
    return sized


def show_chart(spec: dict, *, key: str) -> None:
    """Draw a plotly figure spec with readable type; taller and with larger type when presenting."""
    layout = dict(spec.get("layout", {}))
    size = BASE_FONT
    if presenting():
        layout["height"] = int(layout.get("height", 300) * CHART_SCALE)
        size = BASE_FONT * CHART_SCALE
    st.plotly_chart({**spec, "layout": sized_fonts(layout, size=size)}, config=PLOT_CONFIG, key=key)
