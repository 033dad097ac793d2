"""Presentation mode: a sidebar switch for projecting on a wall: larger type and charts, settings tucked away."""

from __future__ import annotations

import streamlit as st

from engine.figures import PLOT_CONFIG

KEY = "sidebar_presentation"
CHART_SCALE = 1.45  # chart height and font in presentation mode
STYLE = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 21px; }
[data-testid="stMainBlockContainer"], .block-container {
  max-width: 100% !important; padding-left: 2rem; padding-right: 2rem;
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


def show_chart(spec: dict, *, key: str) -> None:
    """Draw a plotly figure spec, taller and with larger type when presenting."""
    if presenting():
        layout = dict(spec.get("layout", {}))
        layout["height"] = int(layout.get("height", 300) * CHART_SCALE)
        layout["font"] = {**layout.get("font", {}), "size": int(layout.get("font", {}).get("size", 14) * 1.35)}
        spec = {**spec, "layout": layout}
    st.plotly_chart(spec, config=PLOT_CONFIG, key=key)
