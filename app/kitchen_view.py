"""The Kitchen panel: the shared model's batched loop, drawn live from its own step records.

Tables are anonymous numbers; a visitor's own table is marked "you". Nothing here reaches another visitor's
prompt or answer: the slot keeps only step records (engine.serving.StepInfo).
"""

from __future__ import annotations

import time

import streamlit as st

from app.kitchen import KITCHEN_WINDOW_S, GenerationJob, ModelSlot
from app.presentation import show_chart
from app.text import explanation
from app.watching import redraw_while
from engine.schedule import batch_chart, gantt_chart, kitchen_lesson, kitchen_now, table_spans

KITCHEN_REDRAW_SECONDS = 1.0


def draw_kitchen(slot: ModelSlot, *, mine: int | None = None, window_s: float = KITCHEN_WINDOW_S, key: str) -> None:
    """Metrics, the restaurant's sentence, the Gantt view and batch-size chart of the last `window_s` seconds."""
    now_s = time.time()
    steps = slot.recent_steps(window_s=window_s)
    now = kitchen_now(steps, now_s=now_s)
    columns = st.columns(4)
    columns[0].metric("Requests cooking now", now.cooking, help="requests in the kitchen's newest step")
    limit = slot.worker.max_batch if slot.worker is not None else None
    columns[1].metric("Waiting for a place", now.waiting, help=f"the batch holds at most {limit} requests")
    rate = "–" if now.tokens_per_s is None else f"{now.tokens_per_s:,.1f}"
    columns[2].metric("Tokens/s, all tables", rate, help="every table's tokens over the last 10 s of steps")
    columns[3].metric("Tables in the last minute", now.tables_served)
    if not steps:
        st.info("The kitchen has been idle for the last minute: press **Generate** on the live page to start it.")
        return
    st.markdown(kitchen_lesson(now))
    spans = table_spans(steps)
    show_chart(gantt_chart(spans, now_s=now_s, window_s=window_s, mine=mine), key=f"{key}_gantt")
    show_chart(batch_chart(steps, now_s=now_s, window_s=window_s), key=f"{key}_batch")


def draw_kitchen_live(slot: ModelSlot, *, mine: int | None = None, key: str, while_active=None) -> None:
    """The panel, redrawn every second (while `while_active()` holds, or for as long as the page is open)."""
    st.caption(explanation("kitchen", "panel"))
    active = while_active or (lambda: True)
    redraw_while(active, lambda: draw_kitchen(slot, mine=mine, key=key), every=KITCHEN_REDRAW_SECONDS)


def orders_to_stop(slot: ModelSlot) -> None:
    """The presenter's view of every order in the kitchen (tables, never prompts), each with a Stop button."""
    st.markdown("#### Orders in the kitchen (presenter)")
    jobs = [job for job in slot.active_jobs() if job.active]
    if not jobs:
        st.caption("No orders now.")
        return
    for number, job in enumerate(jobs):
        if isinstance(job, GenerationJob):
            where = f"table {job.table}" if job.table is not None else "waiting for a table"
            what = f"{where} · {job.state} · {len(job.records)} tokens so far"
        else:
            what = f"the {job.experiment} experiment · {job.state} (an experiment cooks alone)"
        columns = st.columns([4, 1])
        columns[0].text(what)
        if columns[1].button("Stop", key=f"kitchen_stop_{number}_{id(job)}", disabled=job.stop_pressed.is_set()):
            job.stop_pressed.set()
            st.rerun()
