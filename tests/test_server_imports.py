"""The dashboard's server draws its first page without torch or transformers (the model's worker has them)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Everything the live page and the sidebar import, and every message the worker sends the server.
FIRST_PAGE_MODULES = (
    "app.kitchen",
    "app.sidebar",
    "app.site",
    "app.live_view",
    "app.kitchen_view",
    "app.watching",
    "app.run_view",
    "app.views",
    "engine.worker",
    "engine.facts",
    "engine.request",
    "engine.steps",
    "engine.records",
    "engine.trace",
    "engine.schedule",
    "engine.tokens",
    "engine.experiments",
    "engine.experiments.base",
    "engine.experiments.result",
)


def test_the_first_page_s_modules_import_neither_torch_nor_transformers():
    script = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {FIRST_PAGE_MODULES!r}:
            importlib.import_module(name)
        heavy = sorted(name for name in ("torch", "transformers") if name in sys.modules)
        print("heavy:", heavy)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert "heavy: []" in done.stdout, done.stdout + done.stderr


def test_the_experiments_registry_names_modules_that_exist_with_their_options():
    from engine.experiments import EXPERIMENTS
    from engine.experiments.base import Options

    for experiment in EXPERIMENTS.values():
        assert issubclass(experiment.options_type, Options)
        assert callable(experiment.run)
        assert experiment.row_fields


def test_what_the_worker_sends_unpickles_without_torch(tiny):
    """Every kind of message the server unpickles from the worker: a request, records, steps, a trace, facts."""
    import pickle

    from engine import GenerationSettings, prepare_request
    from engine.hardware import machine_facts
    from engine.run import build_trace
    from engine.serving import Kitchen, Order
    from engine.tokens import tokenizer_for_pages

    steps, records = [], []
    kitchen = Kitchen(tiny, on_step=steps.append)
    request = prepare_request(tiny, "hello", settings=GenerationSettings(max_new_tokens=3, stop_at_eos=False))
    kitchen.add(Order(table=1, request=request, on_record=records.append))
    while not kitchen.idle:
        kitchen.step()
    sent = [request, records, steps, build_trace(tiny, request, records), tiny.facts, machine_facts()]
    sent.append(tokenizer_for_pages(tiny.tokenizer))
    script = textwrap.dedent(
        """
        import pickle, sys
        pickle.loads(sys.stdin.buffer.read())
        print("heavy:", sorted(name for name in ("torch", "transformers") if name in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, input=pickle.dumps(sent), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"heavy: []" in done.stdout, done.stdout.decode()
