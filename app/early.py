"""The default model's worker, started the moment the server starts (app/launch.py), before anything imports torch.

Loading the default model takes ~7.5-9.5 s here (torch and transformers imports, tokenizer, weights). Started
with the server, it loads while the server starts and the first browser draws the page, which needs no torch
(the worker also tells the machine's devices, `machine()` below); the first token comes ~9 s after `make run`.
The first slot for the default model adopts this worker instead of starting its own (app.kitchen). Nothing here
imports torch.
"""

from __future__ import annotations

import os
import threading

import psutil

from app.hosting import offered_models
from engine.facts import DEFAULT_MODEL, MachineFacts
from engine.settings import DEFAULT_MAX_BATCH
from engine.worker import ModelWorker

MACHINE_WAIT_S = 30.0  # the worker says which devices it sees ~3 s after it starts (torch imported)

_started: ModelWorker | None = None
_first: ModelWorker | None = None  # the early worker even once adopted: it tells this machine's devices
_machine: MachineFacts | None = None
_ever_started = False  # once per server: app/launch.py and the server's start hook may both ask
_lock = threading.Lock()


def dashboard_threads() -> int:
    """CPU threads for the dashboard's model: $INFERENCE_KITCHEN_THREADS, else every physical core but one.

    The browser and the server draw on the same machine. When the model's threads fill every core, any drawing
    preempts one of them and each parallel step waits for it (measured on 2 cores: a neighbour busy half the
    time slowed decode from 33 to 59 ms per token; with one core left free, a fully busy neighbour cost 5%).
    """
    raw = os.environ.get("INFERENCE_KITCHEN_THREADS", "").strip()
    if raw:
        return max(1, int(raw))
    return max(1, (psutil.cpu_count(logical=False) or os.cpu_count() or 1) - 1)


def kitchen_max_batch() -> int:
    """Most requests cooked together: $INFERENCE_KITCHEN_MAX_BATCH, else the worker's default."""
    raw = os.environ.get("INFERENCE_KITCHEN_MAX_BATCH", "").strip()
    return max(1, int(raw)) if raw else DEFAULT_MAX_BATCH


def start_default_worker() -> None:
    """Start the default model's worker now (its device and dtype: the machine's defaults), unless the hosting
    configuration offers another model first (its first visitor starts that one)."""
    global _started, _first, _ever_started
    offered = offered_models()
    if offered is not None and offered[0] != DEFAULT_MODEL:
        return
    with _lock:
        if not _ever_started:
            _started = _first = ModelWorker(None, threads=dashboard_threads(), max_batch=kitchen_max_batch())
            _ever_started = True


def take_default_worker() -> ModelWorker | None:
    """The early worker, once: the default model's first slot adopts it (None if none was started or it is taken)."""
    global _started
    with _lock:
        worker, _started = _started, None
        return worker


def close_early_worker() -> None:
    """Stop the early worker if no slot adopted it (the server is stopping)."""
    worker = take_default_worker()
    if worker is not None:
        worker.close()


def machine() -> MachineFacts:
    """This machine's devices, their dtypes and descriptions, for the sidebar.

    The early worker sends them as soon as it has imported torch, so the server's first page needs no torch of its
    own (~2.5 s of CPU here, taken from the model's loading on two cores); without an early worker (a page
    tested alone, `streamlit run app/main.py`) they are found here.
    """
    global _machine
    if _machine is None:
        facts = _first.machine_facts(timeout_s=MACHINE_WAIT_S) if _first is not None else None
        if facts is None:
            from engine.hardware import machine_facts

            facts = machine_facts()
        _machine = facts
    return _machine
