"""Side-by-side summaries and a self-contained HTML report (plotly embedded: it opens offline in any browser).

python -m engine report RUN.json [MORE.json ...] --out report.html
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

from engine import figures
from engine.experiments.result import ExperimentResult
from engine.remote_run import ttft_story
from engine.trace import Trace
from engine.units import fmt_bytes, fmt_ms, fmt_value

SUMMARY_METRICS = (  # (label, summary field, format)
    ("time to first token", "ttft_ms", fmt_ms),
    ("inter-token latency p50", "itl_p50_ms", fmt_ms),
    ("inter-token latency p90", "itl_p90_ms", fmt_ms),
    ("decode tokens/s", "decode_tokens_per_s", lambda v: f"{v:,.1f}" if v is not None else "n/a"),
    ("prefill tokens/s", "prefill_tokens_per_s", lambda v: f"{v:,.0f}" if v is not None else "n/a"),
    ("total time", "total_ms", fmt_ms),
    ("new tokens", "new_tokens", lambda v: f"{v:,}"),
    ("peak memory", "peak_memory_bytes", fmt_bytes),
)


def run_name(trace: Trace) -> str:
    """A short name for a trace in a comparison: model, dtype, device (or server), date."""
    model, when = trace.model, trace.created_at[:16].replace("T", " ")
    if trace.remote is not None:
        return f"{model['name']} · {trace.kitchen} · {when}"
    return f"{model['name']} · {model['dtype']} · {model['device']} · {when}"


def run_facets(trace: Trace) -> dict[str, str]:
    """What can set two runs apart, each as it reads in a label (model, hardware, settings that change the picture)."""
    settings, model, hardware = trace.settings, trace.model, trace.hardware
    temperature = float(settings.get("temperature", 0.0))
    remote = trace.remote is not None
    return {
        "kitchen": trace.kitchen,
        "model": str(model.get("name")),
        "dtype": "dtype not known" if remote else str(model.get("dtype")),
        "device": "device not known" if remote else str(model.get("device")),
        "hardware": "the server's hardware" if remote else str(hardware.get("gpu") or hardware.get("cpu")),
        "threads": "the server's threads" if remote else f"{hardware.get('torch_threads')} threads",
        "KV cache": "KV cache on" if settings.get("kv_cache", True) else "KV cache off",
        "temperature": "greedy" if temperature == 0 else f"temperature {temperature:g}",
        "seed": f"seed {settings.get('seed')}",
        "path": f"path {settings['path']}" if "path" in settings else "path eager",
        "batch": f"batch {settings.get('batch_size', 1)}",
        "chat template": "chat template" if settings.get("chat_template", True) else "no chat template",
        "prompt": f"“{trace.prompt['text'][:30]}”",
        "max new tokens": f"max {settings.get('max_new_tokens')} tokens",
    }


def run_names(traces: list[Trace], *, imported: list[bool] | None = None) -> list[str]:
    """Names for compared runs that say what differs between them: "run 2: KV cache off, float16".

    Runs differing only in a setting used to get identical names (model · dtype · device · minute); now each name
    lists the facets whose values are not the same in every run, and the time only when nothing else differs.
    """
    facets = [run_facets(trace) for trace in traces]
    differing = [name for name in facets[0] if len({facet[name] for facet in facets}) > 1] if len(traces) > 1 else []
    names = []
    for index, (trace, facet) in enumerate(zip(traces, facets, strict=True)):
        parts = [facet[name] for name in differing] or [run_name(trace)]
        if len(traces) > 1 and len({tuple(f[n] for n in differing) for f in facets}) < len(traces):
            parts.append(trace.created_at[11:19])  # two runs alike in every facet: their time tells them apart
        mark = " (imported)" if imported is not None and imported[index] else ""
        names.append(f"run {index + 1}{mark}: {', '.join(parts)}")
    return names


def compare_summaries(traces: list[Trace]) -> list[dict]:
    """One row per headline figure: each run's value and its ratio to the first run's."""
    rows = []
    for label, field, fmt in SUMMARY_METRICS:
        values = [getattr(trace.summary, field) for trace in traces]
        row = {"figure": label}
        for index, value in enumerate(values):
            row[f"run {index + 1}"] = fmt(value)
            if index:
                row[f"run {index + 1} ÷ run 1"] = (
                    f"{value / values[0]:.2f}x" if value is not None and values[0] else "n/a"
                )
        rows.append(row)
    return rows


def table_html(rows: list[dict]) -> str:
    """A plain HTML table from a list of flat dicts (cells escaped; floats with 4 significant digits)."""
    if not rows:
        return ""
    import pandas as pd

    table = pd.DataFrame(rows).map(fmt_value)
    return table.to_html(index=False, escape=True, border=0, na_rep="", justify="left")


def trace_figures(traces: list[Trace], names: list[str]) -> list[tuple[str, dict]]:
    """The charts of one trace, or the overlays of several."""
    if len(traces) == 1:
        trace = traces[0]
        records = list(trace.events)
        drawn = [
            ("Latency of every token", figures.latency_chart(records)),
            ("Tokens over time", figures.tokens_over_time_chart(records)),
        ]
        if figures.recorded(records, "kv_cache_bytes"):  # a remote run's are not known (render_report says so)
            kv_chart = figures.kv_cache_chart(
                records,
                kv_bytes_per_token=trace.model["kv_bytes_per_token"],
                prompt_tokens=len(trace.prompt["tokens"]),
                kv_cache=bool(trace.settings.get("kv_cache", True)),
            )
            drawn.append(("KV cache", kv_chart))
        if figures.recorded(records, "memory_bytes"):
            drawn.append(("Memory", figures.memory_chart(records)))
        return drawn
    return [(title, figures.overlay_chart(traces, names, metric=metric)) for title, metric in figures.OVERLAYS]


def where_it_ran(trace: Trace) -> str:
    """One line on the model and machine behind a trace (a remote one: the server, and what its clock includes)."""
    engine = f"engine {trace.versions.get('engine')}"
    if trace.remote is not None:
        unseen = " ".join(figures.NOT_SEEN_FROM_A_CLIENT.values())
        story = ttft_story(trace)
        return (
            f"{trace.model['name']} on {trace.kitchen}, {engine}. Times {trace.remote.get('clock')}. "
            f"{trace.remote.get('count_check')}. {unseen}" + (f" {story}" if story else "")
        )
    hardware = trace.hardware.get("gpu") or trace.hardware.get("cpu", "?")
    return f"{trace.model['name']}, {trace.model['dtype']} on {trace.model['device']} ({hardware}), {engine}"


def render_report(
    runs: list[Trace | ExperimentResult],
    *,
    title: str = "Inference Kitchen report",
    imported: list[bool] | None = None,
) -> str:
    """One self-contained HTML page for one run or a comparison (`imported`: which runs were brought in from a file,
    not measured by this installation); plotly.js is embedded once."""
    import plotly.io

    imported = imported or [False] * len(runs)
    traces = [run for run in runs if isinstance(run, Trace)]
    results = [(run, mark) for run, mark in zip(runs, imported, strict=True) if isinstance(run, ExperimentResult)]
    names = run_names(
        traces, imported=[mark for run, mark in zip(runs, imported, strict=True) if isinstance(run, Trace)]
    )
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>Made {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by Inference "
        f"Kitchen from {len(runs)} recorded run(s).</p>",
    ]
    for name, trace in zip(names, traces, strict=True):
        parts.append(
            f"<h2>{html.escape(name)}</h2><p>{html.escape(where_it_ran(trace))}</p>"
            f"<p><b>Prompt:</b> {html.escape(trace.prompt['text'])}</p><p><b>Answer:</b> "
            f"{html.escape(trace.answer)}</p>"
        )
    if traces:
        parts.append("<h2>Summary</h2>" + table_html(compare_summaries(traces)))
        first = True
        for chart_title, spec in trace_figures(traces, names):
            chart = plotly.io.to_html(spec, full_html=False, include_plotlyjs=first, config={"displaylogo": False})
            parts.append(f"<h3>{html.escape(chart_title)}</h3><div class='chart'>{chart}</div>")
            first = False
    for result, mark in results:
        parts.append(
            f"<h2>Experiment{' (imported)' if mark else ''}: {html.escape(result.experiment)} "
            f"({html.escape(result.created_at[:16])})</h2>"
            f"<p class='finding'>{html.escape(result.finding)}</p>"
            + table_html([dict(row) for row in result.rows[:200]])
        )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em "
        "auto;color:#102A43}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #D9E2EC;padding:.3em .6em;text-align:right}th{background:#F0F4F8}.meta{color:#627D98}"
        ".finding{background:#E3F9E5;padding:.8em;border-radius:6px}"
    )
    return (
        "<!DOCTYPE html><html><head><meta "
        f"charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
