"""Plotly figures drawn from a run's records; they compute nothing, only lay out what was measured.

Figures are plain dict specs with a small explicit style, not graph_objects with a named template: building
validated figure objects and expanding the template cost ~30-150 ms per chart here, paid again at every live
redraw on the same CPU the model is using. Streamlit validates the dict once when it draws it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from engine.records import TokenRecord

PREFILL_COLOR = "#E4572E"  # orange: reading the order
DECODE_COLOR = "#2E86AB"  # blue: cooking one dish at a time
FORMULA_COLOR = "#6C757D"
MEMORY_COLOR = "#6A4C93"
LIMIT_COLOR = "#C0392B"
GRID_COLOR = "#E5E8EC"
PLOT_CONFIG = {"displayModeBar": False}
TEN_SECONDS_MS = 10_000  # the seed article's "people give up after about ten seconds"


def axis(title: str, **extra: object) -> dict:
    """An axis with a title and light grid lines."""
    # automargin: the margins grow to fit tick labels and the title (the HTML report, drawn by plain plotly.js,
    # clipped its y numbers under the title without it; Streamlit's theme had been setting it for the dashboard)
    return {"title": {"text": title}, "gridcolor": GRID_COLOR, "zerolinecolor": GRID_COLOR, "automargin": True, **extra}


def log_ticks(values: Sequence[float]) -> dict:
    """Tick settings for a log axis: 1-2-5 steps labelled in full (plotly's default writes "2 3 4 … 100 2 3")."""
    positive = [v for v in values if v and v > 0]
    if not positive:
        return {}
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    ticks = [m * 10**e for e in range(low, high + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if min(positive) / 2.5 <= t <= max(positive) * 2.5]
    return {"tickvals": ticks, "ticktext": [f"{t:,.10g}" for t in ticks]}


def figure(data: list[dict], *, x_title: str, y_title: str, height: int = 300, **layout: object) -> dict:
    """A figure spec with the shared look: large readable fonts (projectors), white background, tight margins."""
    spec = {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "font": {"size": 14},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "xaxis": axis(x_title),
        "yaxis": axis(y_title),
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0},
        "uirevision": "keep",  # live redraws keep the visitor's zoom
        **layout,
    }
    for name, value in spec.items():  # y numbers a little off the axis: "0" and "0" met at the origin
        if name.startswith("yaxis") and isinstance(value, dict):
            spec[name] = {"ticklabelstandoff": 6, **value}
    return {"data": data, "layout": spec}


NOT_SEEN_FROM_A_CLIENT = {  # what a remote run's records leave null, and why (engine.remote_run)
    "kv_cache_bytes": "The server does not tell a client how big its KV cache is, so this run has no KV-cache chart.",
    "memory_bytes": "The server does not tell a client how much memory it uses, so this run has no memory chart.",
}


def recorded(records: Sequence[TokenRecord], field: str) -> bool:
    """True when the records carry this measurement (a remote run's have no KV-cache bytes or memory)."""
    return bool(records) and all(getattr(record, field) is not None for record in records)


def megabytes(count: int | None, digits: int = 6) -> float | None:
    """Bytes as MB for a chart, None (a gap in the line) when not known."""
    return round(count / 1e6, digits) if count is not None else None


def latency_chart(records: Sequence[TokenRecord]) -> dict:
    """Per-token latency bars, the prefill step in its own color."""
    bars = []
    for phase, color, name in (
        ("prefill", PREFILL_COLOR, "prefill (reading the order)"),
        ("decode", DECODE_COLOR, "decode (one token at a time)"),
    ):
        chosen = [r for r in records if r.phase == phase]
        bars.append(
            {
                "type": "bar",
                "name": name,
                "marker": {"color": color},
                "x": [r.step for r in chosen],
                "y": [round(r.latency_ms, 3) for r in chosen],
                "hovertemplate": "step %{x}: %{y:.1f} ms<extra></extra>",
            }
        )
    return figure(bars, x_title="token (step)", y_title="latency (ms)")


def tokens_over_time_chart(records: Sequence[TokenRecord]) -> dict:
    """Tokens produced against time since the request started."""
    line = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "tokens",
        "line": {"color": DECODE_COLOR},
        "x": [round(r.t_ms / 1000, 4) for r in records],
        "y": [r.step + 1 for r in records],
        "marker": {"size": 6, "color": [PREFILL_COLOR if r.phase == "prefill" else DECODE_COLOR for r in records]},
        "hovertemplate": "%{x:.2f} s: %{y} tokens<extra></extra>",
    }
    return figure([line], x_title="time since the request started (s)", y_title="tokens generated")


def kv_cache_chart(
    records: Sequence[TokenRecord], *, kv_bytes_per_token: int, prompt_tokens: int, kv_cache: bool
) -> dict:
    """Measured KV-cache bytes per step next to the formula line kv_bytes_per_token x tokens held."""
    steps = [r.step for r in records]
    data = []
    if kv_cache:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"formula: {kv_bytes_per_token:,} B × tokens held",
                "line": {"color": FORMULA_COLOR, "dash": "dash"},
                "x": steps,
                "y": [kv_bytes_per_token * (prompt_tokens + s) / 1e6 for s in steps],
                "hovertemplate": "formula at step %{x}: %{y:.3f} MB<extra></extra>",
            }
        )
    data.append(
        {
            "type": "scatter",
            "mode": "markers",
            "name": "measured (from the cache's tensors)",
            "marker": {"color": DECODE_COLOR, "size": 6},
            "x": steps,
            "y": [r.kv_cache_bytes / 1e6 for r in records],
            "hovertemplate": "measured at step %{x}: %{y:.3f} MB<extra></extra>",
        }
    )
    return figure(data, x_title="token (step)", y_title="KV cache (MB)")


def memory_chart(records: Sequence[TokenRecord]) -> dict:
    """Memory in use after each step, against time."""
    line = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "memory",
        "line": {"color": MEMORY_COLOR},
        "marker": {"size": 4},
        "x": [round(r.t_ms / 1000, 4) for r in records],
        "y": [round(r.memory_bytes / 1e6, 2) for r in records],
        "hovertemplate": "%{x:.2f} s: %{y:,.1f} MB<extra></extra>",
    }
    # From zero: the weights dominate, and a zoomed axis would turn the prep station's few MB into a cliff.
    return figure(
        [line],
        x_title="time since the request started (s)",
        y_title="memory (MB)",
        yaxis=axis("memory (MB)", rangemode="tozero"),
    )


SERVER_SERIES = (  # what a server's /metrics samples are drawn as: (our name, legend, axis)
    ("running", "requests running", "y"),
    ("waiting", "requests waiting", "y"),
    ("kv_cache_usage", "KV cache in use (%)", "y2"),
)


def server_metrics_chart(samples: Sequence[dict], records: Sequence[TokenRecord], *, server: str | None) -> dict:
    """A server's own numbers while it answered (running and waiting requests, KV-cache use), on the run's clock,
    with this run's tokens marked where they arrived."""
    times = [round(sample["t_ms"] / 1000, 3) for sample in samples]
    lines = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": legend,
            "x": times,
            "y": [
                (sample["values"][name] * 100 if axis_name == "y2" else sample["values"][name])
                if name in sample["values"]
                else None
                for sample in samples
            ],
            "yaxis": axis_name,
            "line": {"color": color, "shape": "hv"},
            "hovertemplate": f"%{{x:.2f}} s: %{{y:,.1f}} {legend}<extra></extra>",
        }
        for (name, legend, axis_name), color in zip(
            SERVER_SERIES, (DECODE_COLOR, PREFILL_COLOR, MEMORY_COLOR), strict=True
        )
        if any(name in sample["values"] for sample in samples)
    ]
    arrivals = {
        "type": "scatter",
        "mode": "markers",
        "name": "this run's tokens arriving",
        "x": [round(record.t_ms / 1000, 3) for record in records],
        "y": [0] * len(records),
        "marker": {"color": FORMULA_COLOR, "symbol": "line-ns-open", "size": 10},
        "hovertemplate": "a token at %{x:.2f} s<extra></extra>",
    }
    requests = f"requests ({html.escape(server or 'the server')})"  # a file's text: plotly draws HTML in titles
    return figure(
        [*lines, arrivals],
        x_title="time since the request was sent (s)",
        y_title=requests,
        yaxis=axis(requests, rangemode="tozero"),
        yaxis2={"title": {"text": "KV cache in use (%)"}, "overlaying": "y", "side": "right", "range": [0, 100],
                "showgrid": False},
    )  # fmt: skip


def budget_chart(total_ms: float, ttft_ms: float) -> dict:
    """This answer's time to first token and total time against the ten-second line."""
    limit_s = TEN_SECONDS_MS / 1000
    bars = [
        {
            "type": "bar",
            "orientation": "h",
            "y": ["this answer"],
            "x": [ttft_ms / 1000],
            "name": "waiting for the first token",
            "marker": {"color": PREFILL_COLOR},
            "hovertemplate": "first token after %{x:.2f} s<extra></extra>",
        },
        {
            "type": "bar",
            "orientation": "h",
            "y": ["this answer"],
            "x": [(total_ms - ttft_ms) / 1000],
            "name": "the rest of the answer",
            "marker": {"color": DECODE_COLOR},
            "hovertemplate": "%{x:.2f} s more for the rest<extra></extra>",
        },
    ]
    return figure(
        bars,
        x_title="seconds",
        y_title="",
        height=230,
        barmode="stack",
        # the legend under the axis: above the bar it collided with the "10 s" note once a run passed 10 s
        legend={"orientation": "h", "yanchor": "top", "y": -0.55, "x": 0},
        xaxis=axis("seconds", range=[0, max(limit_s, total_ms / 1000) * 1.05]),
        shapes=[
            {
                "type": "line",
                "x0": limit_s,
                "x1": limit_s,
                "y0": 0,
                "y1": 1,
                "yref": "paper",
                "line": {"color": LIMIT_COLOR, "width": 3, "dash": "dot"},
            }
        ],
        annotations=[
            {
                "x": limit_s,
                "y": 1,
                "yref": "paper",
                "text": "10 s: people give up",
                "showarrow": False,
                "xanchor": "right",
                "yanchor": "bottom",
                "font": {"color": LIMIT_COLOR},
            }
        ],
    )


RUN_COLORS = ["#2E86AB", "#E4572E", "#6A4C93", "#2A9D8F", "#F4A259", "#8E44AD", "#6C757D", "#C0392B"]
OVERLAYS = (
    ("Latency of every token", "latency"),
    ("Tokens over time", "tokens"),
    ("KV cache", "kv"),
    ("Memory", "memory"),
    ("Requests in each token's step (batch size)", "batch"),
)


def overlay_chart(traces: Sequence, names: Sequence[str], *, metric: str) -> dict:
    """Several runs on one chart: per-token latency, tokens over time, KV-cache bytes, memory or batch size."""
    axes = {
        "latency": ("token (step)", "latency (ms)", lambda r: r.step, lambda r: round(r.latency_ms, 3)),
        "tokens": (
            "time since the request started (s)",
            "tokens generated",
            lambda r: round(r.t_ms / 1000, 4),
            lambda r: r.step + 1,
        ),
        "kv": ("token (step)", "KV cache (MB)", lambda r: r.step, lambda r: megabytes(r.kv_cache_bytes)),
        "memory": (
            "time since the request started (s)",
            "memory (MB)",
            lambda r: round(r.t_ms / 1000, 4),
            lambda r: megabytes(r.memory_bytes, 2),
        ),
        "batch": ("token (step)", "requests in the step", lambda r: r.step, lambda r: r.batch_size),
    }
    x_title, y_title, x_of, y_of = axes[metric]
    field = {"kv": "kv_cache_bytes", "memory": "memory_bytes"}.get(metric)
    names = [  # a remote run's line is empty here: its name says why
        f"{name} (not sent by the server)" if field and not recorded(trace.events, field) else name
        for trace, name in zip(traces, names, strict=True)
    ]
    lines = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": html.escape(name),  # plotly draws a little HTML in names (links too): shown as typed instead
            "line": {"color": RUN_COLORS[index % len(RUN_COLORS)]},
            "x": [x_of(r) for r in trace.events],
            "y": [y_of(r) for r in trace.events],
            "hovertemplate": "%{fullData.name}<br>%{x}: %{y:,.2f}<extra></extra>",
        }
        for index, (trace, name) in enumerate(zip(traces, names, strict=True))
    ]
    extra = {"yaxis": axis(y_title, rangemode="tozero")} if metric in ("memory", "kv", "batch") else {}
    return figure(
        lines,
        x_title=x_title,
        y_title=y_title,
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0},
        height=360,
        **extra,
    )
