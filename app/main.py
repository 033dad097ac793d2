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

from app.sidebar import draw_sidebar  # noqa: E402

PAGES = {
    "Watch it cook": [
        st.Page(ROOT / "pages" / "live.py", title="Live inference", icon="🔥", url_path="live", default=True),
    ],
    "Experiments: why it behaves so": [
        st.Page(ROOT / "pages" / "prefill.py", title="Prefill vs decode", icon="📖", url_path="prefill"),
        st.Page(ROOT / "pages" / "kv_cache.py", title="The KV cache", icon="🧂", url_path="kv-cache"),
        st.Page(ROOT / "pages" / "batch.py", title="Batching", icon="🍽️", url_path="batch"),
        st.Page(ROOT / "pages" / "roofline.py", title="The memory wall", icon="🧱", url_path="roofline"),
        st.Page(ROOT / "pages" / "train_vs_infer.py", title="Training vs inference", icon="🎓", url_path="train-vs-infer"),
    ],
}

st.set_page_config(page_title="Inference Kitchen", page_icon="🍳", layout="wide")
navigation = st.navigation(PAGES)
draw_sidebar()
navigation.run()
