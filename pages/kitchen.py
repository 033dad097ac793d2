"""The kitchen: the shared model's continuously batched loop, live, for the presenter's screen."""

from __future__ import annotations

import streamlit as st

from app.hosting import kitchen_config
from app.kitchen import KITCHEN_WINDOW_S
from app.kitchen_view import draw_kitchen_live, orders_to_stop
from app.sidebar import current_selection
from app.site import link
from app.text import explanation
from app.visitors import may_manage_runs
from app.watching import require_ready_model

st.title("🧑‍🍳 The kitchen: many tables at once")
st.markdown(explanation("kitchen", "intro"))
slot = require_ready_model(current_selection())
mine = next((job.table for job in (st.session_state.get("live_job"),) if job is not None), None)
st.markdown(explanation("kitchen", "chart"))
st.caption(f"The last {KITCHEN_WINDOW_S:.0f} seconds, redrawn every second.")
draw_kitchen_live(slot, mine=mine, key="kitchen_page")
if kitchen_config().hosted and may_manage_runs():
    orders_to_stop(slot)
link("batch", "The batching experiment: the same effect, measured in a controlled sweep")
