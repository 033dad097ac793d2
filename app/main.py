"""Inference Kitchen's Streamlit entry: page setup, the sidebar, and the pages (which live in ../pages).

streamlit run app/main.py      (or simply: make run)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # streamlit puts only app/ on the path; the engine lives beside it
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.kitchen import model_slot  # noqa: E402
from app.presentation import apply_style  # noqa: E402
from app.remote_kitchen import current_server  # noqa: E402
from app.sidebar import draw_sidebar  # noqa: E402
from app.site import navigation_pages  # noqa: E402
from app.state import keep_remembered  # noqa: E402
from app.visitors import current_visitor, visitor_card  # noqa: E402

st.set_page_config(page_title="Inference Kitchen", page_icon="🍳", layout="wide")
keep_remembered()  # what the visitor set on other pages survives this page's run
visitor = current_visitor()  # hosted mode: a login or the access code first, where configured
navigation = st.navigation(navigation_pages())
selection = draw_sidebar()
visitor_card(visitor)
# Start the chosen model loading now, whatever page the visitor opened first (it loads in the background, in its
# own process): by the time they reach the live page it is ready, instead of starting the ~10 s load there. Not
# while the live page cooks on a server (a laptop showing a GPU cluster): the pages that need it load it then.
if current_server() is None:
    model_slot(selection.model, selection.device, selection.dtype)
apply_style()
navigation.run()
