"""The dashboard's server entry (`make run`): start the default model loading, then serve app/main.py.

    streamlit run app/serve.py

Streamlit's `st.App` runs the lifespan hook once when the server starts, before any visitor arrives: the
default model's worker process starts there (app/early.py), in parallel with the server's own imports.
"""

from __future__ import annotations

import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # streamlit puts only app/ on the path; the engine lives beside it
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.early import close_early_worker, start_default_worker  # noqa: E402

# What the live page needs: no torch, no transformers (the worker sends plain data, its tokenizer as a
# `tokenizers.Tokenizer`, the machine's devices), ~1 s here.
FIRST_PAGE_MODULES = ("app.kitchen", "app.sidebar", "app.live_view", "app.kitchen_view", "plotly.graph_objects")


def warm_imports() -> None:
    """Import what the first page needs while the first visitor's browser is still loading Streamlit's JavaScript.

    The experiments' modules (torch, ~3 s of CPU here) are left to the first visit of an experiment's page:
    warmed in the background, they landed now and then right when a visitor's first run started and delayed its
    first token (measured: 10-12 s instead of 8-9 s after `make run`).
    """
    import importlib

    for name in FIRST_PAGE_MODULES:
        importlib.import_module(name)


@asynccontextmanager
async def lifespan(_app: st.App):
    """Start the default model's worker and the page's imports with the server; stop the worker with it."""
    start_default_worker()
    threading.Thread(target=warm_imports, name="warm-imports", daemon=True).start()
    yield
    close_early_worker()


app = st.App("main.py", lifespan=lifespan)
