"""How a run is drawn — live, finished or replayed: status, token chips, headline numbers and the five charts.

Everything here reads records and the model's facts as a plain dict (`ModelFacts.to_dict()` or a trace's
`model`), so a replay needs no model at all.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from app.presentation import show_chart
from app.text import explanation, literal
from app.views import number_cards, token_chips
from engine import Summary, TokenRecord, Trace
from engine import figures as charts
from engine.remote_run import ttft_clocks, ttft_story
from engine.served_config import kv_estimate
from engine.units import fmt_ms, fmt_rate


def kv_card(model: dict, *, kv_cache: bool) -> tuple[str, str, str]:
    """The KV-bytes-per-token card: from the model's facts, or "not known" for a server's model."""
    if "kv_bytes_per_token" not in model and model.get("kv_bytes_per_token_estimate"):  # a server's, config here
        return (
            "KV bytes per token",
            f"~{model['kv_bytes_per_token_estimate']:,} B (estimate)",
            f"From its config.json ({model.get('config_source')}): 2 x {model['layers']} layers x "
            f"{model['kv_heads']} KV heads x {model['head_dim']} head size x bytes per number "
            f"({model.get('config_dtype')}); the server may keep its cache in another dtype.",
        )
    if "kv_bytes_per_token" not in model:  # a remote run: the server does not say how its cache is laid out
        return ("KV bytes per token", "not known", "The server does not tell a client its model's cache layout.")
    return (
        "KV bytes per token",
        f"{model['kv_bytes_per_token']:,} B" if kv_cache else "0 (cache off)",
        f"2 x {model['layers']} layers x {model['kv_heads']} KV heads x {model['head_dim']} head "
        "size x bytes per number.",
    )


def run_html(
    records: Sequence[TokenRecord],
    *,
    model: dict,
    kv_cache: bool,
    summary: Summary,
    status: str,
    rich: bool,
    clock: str | None = None,
) -> str:
    """Status line, answer chips and headline numbers as one HTML block (one element: cheap to redraw).

    `clock`: where the times were taken when not in this process (a remote run: "measured at the client: ...").
    """
    first_token = "Prefill: reading the whole prompt and producing the first token (vLLM's TTFT)."
    if clock:
        first_token = f"From sending the request to the first token's arrival, {clock}."
    cards = number_cards(
        [
            ("time to first token", fmt_ms(summary.ttft_ms), first_token),
            ("inter-token p50", fmt_ms(summary.itl_p50_ms), "Median gap between consecutive tokens (vLLM's ITL)."),
            ("inter-token p90", fmt_ms(summary.itl_p90_ms), "9 in 10 gaps between tokens were at most this long."),
            (
                "decode speed",
                fmt_rate(summary.decode_tokens_per_s),
                "(tokens - 1) / (total time - time to first token): 1 / vLLM's TPOT.",
            ),
            kv_card(model, kv_cache=kv_cache),
            ("total time", fmt_ms(summary.total_ms), "From the start of the request to the last token."),
            (
                "10-second budget used",
                f"{summary.total_ms / charts.TEN_SECONDS_MS:.0%}",
                "People give up on an AI that takes longer than about ten seconds to answer (the seed article).",
            ),
        ]
    )
    chips = token_chips(records, eos_token_ids=tuple(model.get("eos_token_ids") or ()), rich=rich)
    where = f"<div class='ik-clock'>⏱ Times {html.escape(clock)}.</div>" if clock else ""
    return f"<div class='ik-status'>{status}</div>{where}{chips}{cards}"


def draw_run_charts(
    records: Sequence[TokenRecord], *, model: dict, kv_cache: bool, prompt_tokens: int, summary: Summary, key: str
) -> None:
    """The budget bar and the four per-token charts, each with its sentence from assets/explain/live.md."""
    st.markdown(explanation("live", "budget"))
    show_chart(charts.budget_chart(summary.total_ms, summary.ttft_ms), key=f"{key}_chart_budget")
    left, right = st.columns(2)
    with left:
        st.markdown(explanation("live", "latency"))
        show_chart(charts.latency_chart(records), key=f"{key}_chart_latency")
        if not charts.recorded(records, "kv_cache_bytes"):
            estimate = kv_estimate(model, answer_tokens=len(records))  # from the server model's config, if here
            st.info(charts.NOT_SEEN_FROM_A_CLIENT["kv_cache_bytes"] + (f" {literal(estimate)}" if estimate else ""))
        else:
            st.markdown(explanation("live", "kv"))
            show_chart(
                charts.kv_cache_chart(
                    records, kv_bytes_per_token=model["kv_bytes_per_token"], prompt_tokens=prompt_tokens,
                    kv_cache=kv_cache,
                ),
                key=f"{key}_chart_kv",
            )  # fmt: skip
    with right:
        st.markdown(explanation("live", "tokens"))
        show_chart(charts.tokens_over_time_chart(records), key=f"{key}_chart_tokens")
        if not charts.recorded(records, "memory_bytes"):
            st.info(charts.NOT_SEEN_FROM_A_CLIENT["memory_bytes"])
        else:
            memory_kind = (
                "resident memory of the process"
                if model.get("device", "cpu") == "cpu"
                else f"memory allocated on {model['device']}"
            )
            st.markdown(explanation("live", "memory", memory_kind=memory_kind))
            show_chart(charts.memory_chart(records), key=f"{key}_chart_memory")


def draw_server_metrics(trace: Trace, *, key: str) -> None:
    """A remote run's server numbers (its /metrics while it answered, its own TTFTs) beside its tokens, or why none."""
    if trace.remote is None:
        return
    metrics = trace.remote.get("metrics")
    if metrics:
        st.markdown(
            "**The server while it cooked.** Sampled from its Prometheus `/metrics` four times a second while this "
            "answer streamed: requests it was running and keeping waiting, and how full its KV cache was."
        )
        if metrics["samples"]:
            show_chart(
                charts.server_metrics_chart(metrics["samples"], list(trace.events), server=metrics.get("server")),
                key=f"{key}_chart_server",
            )
        else:
            st.caption(literal(metrics.get("note") or "The server published no metrics during this run."))
    clocks = ttft_clocks(trace)
    if len(clocks) > 1:  # the server sent a TTFT of its own: the clocks side by side, and where the time went
        st.markdown(
            f"**Time to first token, on each clock.** The same first token, timed from {len(clocks)} different "
            "moments: each clock below starts later than the one above it, so it holds less."
        )
        table = pd.DataFrame(
            {"measured by": c.measured_by, "its clock starts when": c.starts_at, "TTFT": fmt_ms(c.ttft_ms),
             "what lies inside": c.holds}
            for c in clocks
        )  # fmt: skip
        st.dataframe(table, hide_index=True, key=f"{key}_ttft_clocks")
        st.caption(literal(ttft_story(trace)))
