"""The live page's pieces: the generation settings, the tokenizer view, and a job drawn from its records.

A job is drawn from what the worker has recorded so far (a snapshot: the worker keeps appending), so the same
functions draw a run while it cooks and once it is done.
"""

from __future__ import annotations

import html
import os

import streamlit as st

from app.hosting import max_new_tokens_limit
from app.kitchen import GenerationJob
from app.presentation import settings_area
from app.remote_kitchen import RemoteJob
from app.run_view import draw_run_charts, run_html
from app.state import remember
from app.text import literal
from app.views import token_count_metrics, tokenizer_pieces
from app.visitors import may_load_models
from engine import GenerationSettings, summarize
from engine.facts import DECODE_PATHS
from engine.tokens import TextTokens, read_text
from engine.trace import Trace, path_sentence, trace_csv, trace_json

# How often the page redraws from what has been recorded while a run is going. Every redraw costs CPU in the
# server and the browser, and on a small machine that CPU is taken from the model: keep them sparse.
TEXT_REDRAW_SECONDS = float(os.environ.get("INFERENCE_KITCHEN_TEXT_REDRAW_SECONDS", 0.5))
CHART_REDRAW_SECONDS = float(os.environ.get("INFERENCE_KITCHEN_CHART_REDRAW_SECONDS", 2.0))
FINISHED_BY = {
    "eos": "the model (it said it was finished)",
    "length": "the max-new-tokens limit",
    "context": "a full context window",
    "stopped": "a stop before the end",
}


def settings_inputs() -> GenerationSettings:
    """The generation settings' inputs (never disabled: see the prompt box in pages/live.py); what they say now."""
    columns = settings_area("Generation settings").columns(5)
    cap = max_new_tokens_limit()
    max_new_tokens = columns[0].number_input(
        "Max new tokens", 1, cap, min(64, cap), key=remember("live_max_new_tokens")
    )
    temperature = columns[1].slider(
        "Temperature (0 = greedy)", 0.0, 2.0, 0.0, 0.1, key=remember("live_temperature"),
        help="0 always picks the most likely token; higher values pick more adventurously.",
    )  # fmt: skip
    seed = columns[2].number_input(
        "Seed",
        0,
        2**31 - 1,
        0,
        key=remember("live_seed"),
        help="With temperature above 0, the same seed gives the same answer.",
    )
    kv_cache = columns[3].toggle(
        "KV cache",
        True,
        key=remember("live_kv_cache"),
        help="Off: the model re-reads the whole conversation for every token.",
    )
    chat_template = columns[4].toggle(
        "Chat template", True, key=remember("live_chat_template"),
        help="On: the prompt is wrapped as a chat turn (instruct models expect it). Off: raw text completion.",
    )  # fmt: skip
    return GenerationSettings(
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        seed=int(seed),
        kv_cache=kv_cache,
        chat_template=chat_template,
    )


def path_input() -> str:
    """Which decode path the next run takes (engine.paths): eager unless chosen; a compiled one is prepared first."""
    offered = list(DECODE_PATHS) if may_load_models() else ["eager"]  # preparing one: the presenter's call
    path = settings_area("Decode path").selectbox(
        "Decode path (see 'What makes it fast')",
        offered,
        key=remember("live_path"),
        help="eager: instant, every detail, cooked in the batch with everyone's requests. A compiled path is "
        "faster and records the same details, but runs your request alone, after preparing (minutes the first "
        "time, seconds once its compile cache is on disk).",
    )
    if len(offered) < len(DECODE_PATHS):
        st.caption("On this hosted kitchen only the presenter may prepare the compiled decode paths.")
    return path


def path_caption(trace: Trace) -> str | None:
    """What a finished run's decode path was, for under its answer (None: the batched eager kitchen)."""
    if trace.path is None or trace.path["name"] == "eager":
        return None
    return f"Decoded on a compiled path: {path_sentence(trace.path)}; it had the model to itself, not batched."


@st.cache_data(show_spinner=False, max_entries=64)
def tokenizer_view(model_key: str, text: str, _tokenizer: object) -> TextTokens:
    """The prompt's token pieces and measured words per token (cached per model and text)."""
    return read_text(_tokenizer, text)


def draw_tokenizer_view(text: str, *, model_key: str, tokenizer: object, job: GenerationJob | None) -> None:
    """The prompt as the model's tokens, with the measured words per token."""
    tokens = tokenizer_view(model_key, text, tokenizer)
    st.html(tokenizer_pieces(tokens.pieces))
    token_count_metrics(tokens)
    request = job.request if job is not None else None
    if request is not None and request.text == text and request.chat_template_applied:
        st.caption(f"With the chat template around it, the model actually read {len(request.token_ids):,} tokens.")


def status_line(job: GenerationJob, count: int) -> str:
    """One sentence on where the job is."""
    if job.state == "running" and isinstance(job, RemoteJob):
        where = html.escape(f"{job.server.model} on {job.trace_host()}")  # the status line is HTML: names as text
        return f"📡 {where} is answering… {count} tokens so far."
    if job.state == "running":
        table = f" at table {job.table}" if job.table is not None else ""
        sharing = job.records[-1].batch_size - 1 if job.records else 0
        company = f", sharing each step with {sharing} other table{'s' if sharing != 1 else ''}" if sharing else ""
        return f"🍳 Cooking{table}… {count} tokens so far{company}."
    if job.state == "stopped":
        why = f" at this kitchen's limit of {job.seconds_cap:g} s per request" if job.out_of_time else ""
        kept = " The tokens made so far are kept on the Runs page." if job.saved_to is not None else ""
        return f"⏹ Stopped after {count} tokens{why}.{kept}"
    finished_by = FINISHED_BY.get(job.trace.finish_reason, "?") if job.trace else "?"
    return f"✅ Done: {count} tokens, stopped by {finished_by}."


def draw_live_text(job: GenerationJob) -> bool:
    """Status, answer chips and headline numbers as one HTML element; True when there are records to chart."""
    if job.state == "failed":
        st.error(f"**This run failed.** {literal(job.error)}")
        return False
    records = list(job.records)
    status = status_line(job, len(records))
    if not records or job_model(job) is None:
        st.html(f"<div class='ik-status'>{status}</div>")
        return False
    summary = job.trace.summary if job.trace else summarize(records, prompt_tokens=prompt_tokens_of(job))
    clock = job.clock if isinstance(job, RemoteJob) else None
    st.html(run_html(records, model=job_model(job), kv_cache=job.settings.kv_cache, summary=summary, status=status,
                     rich=not job.active, clock=clock))  # fmt: skip
    return True


def job_model(job: GenerationJob) -> dict | None:
    """The model's facts as a trace keeps them (a server's model: its name only); None before it has started."""
    if isinstance(job, RemoteJob):
        return job.trace.model if job.trace is not None else {"name": job.server.model}
    return job.facts.to_dict() if job.facts is not None and job.request is not None else None


def prompt_tokens_of(job: GenerationJob) -> int:
    """Tokens the model read (0 for a server's run: its tokenizer is the server's own, unseen from here)."""
    return len(job.request.token_ids) if job.request is not None else 0


def draw_charts(job: GenerationJob) -> None:
    """The five charts from the records so far (costlier: redrawn less often while running)."""
    records, prompt_tokens = list(job.records), prompt_tokens_of(job)
    summary = job.trace.summary if job.trace else summarize(records, prompt_tokens=prompt_tokens)
    draw_run_charts(records, model=job_model(job), kv_cache=job.settings.kv_cache, prompt_tokens=prompt_tokens,
                    summary=summary, key="live")  # fmt: skip


@st.cache_data(show_spinner=False, max_entries=16)
def trace_files(trace_key: str, _job: GenerationJob) -> tuple[bytes, bytes]:
    """The trace as JSON (the engine's format) and its per-token table as CSV."""
    return trace_json(_job.trace).encode("utf-8"), trace_csv(_job.trace).encode("utf-8")


def draw_downloads(job: GenerationJob) -> None:
    """Download buttons for the finished trace, and where it was saved."""
    stamp = job.trace.created_at.replace(":", "").replace("+0000", "")
    trace_bytes, table_bytes = trace_files(f"{id(job)}-{job.trace.created_at}", job)
    columns = st.columns([1, 1, 3])
    columns[0].download_button(
        "Download trace (JSON)", trace_bytes, file_name=f"trace-{stamp}.json", mime="application/json",
        on_click="ignore", key="live_download_json",
    )  # fmt: skip
    columns[1].download_button(
        "Download tokens (CSV)", table_bytes, file_name=f"tokens-{stamp}.csv", mime="text/csv",
        on_click="ignore", key="live_download_csv",
    )  # fmt: skip
    if job.saved_to is not None:
        columns[2].caption(f"Saved on the server as `{job.saved_to}`.")
