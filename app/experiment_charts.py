"""Plotly figures for the experiments, drawn from a result's rows (plain dict specs, like engine.figures)."""

from __future__ import annotations

from engine.experiments import ExperimentResult
from engine.facts import FAITHFUL_AGREEMENT
from engine.figures import DECODE_COLOR, FORMULA_COLOR, LIMIT_COLOR, PREFILL_COLOR, axis, figure, log_ticks

TRAIN_COLOR = "#8E44AD"
PART_COLORS = {  # where memory goes, in stacking order
    "other_bytes": ("runtime and libraries", "#ADB5BD"),
    "weights_bytes": ("weights", DECODE_COLOR),
    "gradients_bytes": ("gradients", "#F4A259"),
    "optimizer_bytes": ("optimizer state (AdamW)", TRAIN_COLOR),
    "activations_bytes": ("activations and workspace", PREFILL_COLOR),
    "kv_cache_bytes": ("KV cache", "#2A9D8F"),
}


def line(
    name: str,
    x: list,
    y: list,
    *,
    color: str,
    hover: str,
    dash: str | None = None,
    y_axis: str | None = None,
    markers: bool = True,
) -> dict:
    """One line trace (with a marker per measured point unless `markers` is off, e.g. for a formula curve)."""
    spec = {
        "type": "scatter",
        "mode": "lines+markers" if markers else "lines",
        "name": name,
        "x": x,
        "y": y,
        "line": {"color": color, **({"dash": dash} if dash else {})},
        "hovertemplate": hover + "<extra></extra>",
    }
    return {**spec, "yaxis": y_axis} if y_axis else spec


def whiskers(rows: list[dict], middle: str, *, low: str, high: str) -> dict:
    """Error bars from each row's low to high field around its middle (none for results saved without them)."""
    if not rows or not all(low in row and high in row for row in rows):
        return {}
    return {
        "error_y": {
            "type": "data",
            "symmetric": False,
            "array": [row[high] - row[middle] for row in rows],
            "arrayminus": [row[middle] - row[low] for row in rows],
            "color": "#52606D",
        }
    }


def prefill_speed_chart(result: ExperimentResult) -> dict:
    """Prefill tokens/s against prompt length (log axis), with decode tokens/s at the same context."""
    lengths = result.column("prompt_tokens")
    return figure(
        [
            line(
                "prefill: reading the order",
                lengths,
                result.column("prefill_tokens_per_s"),
                color=PREFILL_COLOR,
                hover="%{x} prompt tokens: %{y:,.0f} tokens/s",
            ),
            line(
                "decode: cooking one token at a time",
                lengths,
                result.column("decode_tokens_per_s"),
                color=DECODE_COLOR,
                hover="after %{x} prompt tokens: %{y:,.1f} tokens/s",
            ),
        ],
        x_title="prompt length (tokens)",
        y_title="tokens per second",
        xaxis=axis(
            "prompt length (tokens), log scale", type="log", tickvals=lengths, ticktext=[f"{n:,}" for n in lengths]
        ),
        yaxis=axis(
            "tokens per second, log scale",
            type="log",
            **log_ticks(result.column("prefill_tokens_per_s") + result.column("decode_tokens_per_s")),
        ),
    )


def prefill_time_chart(result: ExperimentResult) -> dict:
    """Prefill time against prompt length, and one decode step's time beside it."""
    lengths = result.column("prompt_tokens")
    return figure(
        [
            {
                "type": "bar",
                "name": "prefill (whole prompt)",
                "x": [str(n) for n in lengths],
                "y": result.column("prefill_ms"),
                "marker": {"color": PREFILL_COLOR},
                "hovertemplate": "%{x} tokens read in %{y:,.0f} ms (median pass)<extra></extra>",
                **whiskers(result.rows, "prefill_ms", low="prefill_min_ms", high="prefill_max_ms"),
            },
            {
                "type": "bar",
                "name": "one decode step after it",
                "x": [str(n) for n in lengths],
                "y": result.column("itl_ms"),
                "marker": {"color": DECODE_COLOR},
                "hovertemplate": "one token after %{x}: %{y:,.1f} ms (median step)<extra></extra>",
                **whiskers(result.rows, "itl_ms", low="itl_p10_ms", high="itl_p90_ms"),
            },
        ],
        x_title="prompt length (tokens)",
        y_title="time (ms)",
        barmode="group",
    )


def kv_latency_chart(result: ExperimentResult) -> dict:
    """Per-token latency with and without the cache, against the token's step."""
    traces = []
    for kv_cache, color, name in (
        (True, DECODE_COLOR, "with the KV cache"),
        (False, LIMIT_COLOR, "without (re-reads everything)"),
    ):
        traces.append(
            line(
                name,
                result.column("step", kv_cache=kv_cache),
                result.column("latency_ms", kv_cache=kv_cache),
                color=color,
                hover="step %{x}: %{y:,.1f} ms",
            )
        )
    return figure(
        traces,
        x_title="token (step; 0 = prefill)",
        y_title="latency (ms)",
        yaxis=axis("latency (ms)", rangemode="tozero"),
    )


def kv_time_chart(result: ExperimentResult) -> dict:
    """Tokens produced over time, with and without the cache."""
    traces = []
    for kv_cache, color, name in ((True, DECODE_COLOR, "with the KV cache"), (False, LIMIT_COLOR, "without")):
        times = [t / 1000 for t in result.column("t_ms", kv_cache=kv_cache)]
        traces.append(
            line(
                name,
                times,
                [s + 1 for s in result.column("step", kv_cache=kv_cache)],
                color=color,
                hover="%{x:.1f} s: %{y} tokens",
            )
        )
    return figure(traces, x_title="time since the request started (s)", y_title="tokens generated")


def batch_chart(result: ExperimentResult) -> dict:
    """Aggregate tokens/s (left axis) and each user's inter-token latency (right axis) against batch size."""
    sizes = result.column("batch_size")
    return figure(
        [
            line(
                "all users together (tokens/s)",
                sizes,
                result.column("tokens_per_s"),
                color=DECODE_COLOR,
                hover="batch %{x}: %{y:,.1f} tokens/s",
            ),
            line(
                "each user's wait per token (ms)",
                sizes,
                result.column("itl_ms"),
                color=PREFILL_COLOR,
                dash="dot",
                y_axis="y2",
                hover="batch %{x}: %{y:,.1f} ms between tokens",
            ),
        ],
        x_title="batch size (users cooked for at once)",
        y_title="tokens per second, all users",
        xaxis=axis("batch size (users cooked for at once)", type="log", tickvals=sizes),
        yaxis=axis("tokens per second, all users", rangemode="tozero"),
        yaxis2={
            "title": {"text": "ms between tokens, per user"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
            "tickmode": "auto",  # its own round numbers, not ticks lined up with the left axis (21.6, 43.2, …)
            "nticks": 6,
        },
    )


def batch_vs_server_chart(batch: ExperimentResult | None, server: ExperimentResult) -> dict:
    """A server's load sweep, and this machine's batching curve (when run) on one chart: total tokens/s and each
    stream's wait."""
    sizes, levels = (batch.column("batch_size") if batch is not None else []), server.column("concurrency")
    here = [
        line("this machine: all users (tokens/s)", sizes, batch.column("tokens_per_s"), color=DECODE_COLOR,
             hover="batch %{x}: %{y:,.1f} tokens/s"),
        line("this machine: wait per token (ms)", sizes, batch.column("itl_ms"), color=DECODE_COLOR, dash="dot",
             y_axis="y2", hover="batch %{x}: %{y:,.1f} ms between tokens"),
    ] if batch is not None else [None, None]  # fmt: skip
    there = [
        line("the server: all streams (tokens/s)", levels, server.column("tokens_per_s"), color=PREFILL_COLOR,
             hover="%{x} at once: %{y:,.1f} tokens/s"),
        line("the server: wait per token (ms)", levels, server.column("itl_p50_ms"), color=PREFILL_COLOR,
             dash="dot", y_axis="y2", hover="%{x} at once: %{y:,.1f} ms between tokens (client clock)"),
    ]  # fmt: skip
    return figure(
        [trace for trace in (here[0], there[0], here[1], there[1]) if trace is not None],
        x_title="requests cooked at once",
        y_title="tokens per second, all together",
        xaxis=axis("requests cooked at once", type="log", tickvals=sorted({*sizes, *levels})),
        yaxis=axis("tokens per second, all together", rangemode="tozero"),
        yaxis2={"title": {"text": "ms between tokens, per stream"}, "overlaying": "y", "side": "right",
                "rangemode": "tozero", "showgrid": False, "tickmode": "auto", "nticks": 6},
    )  # fmt: skip


def answer_time_chart(result: ExperimentResult, *, budget_s: float) -> dict:
    """Each batch size's time for a typical answer against the budget line."""
    sizes = [str(n) for n in result.column("batch_size")]
    colors = [DECODE_COLOR if fits else LIMIT_COLOR for fits in result.column("within_budget")]
    return figure(
        [
            {
                "type": "bar",
                "x": sizes,
                "y": result.column("answer_s"),
                "marker": {"color": colors},
                "name": "time for one answer",
                "hovertemplate": "batch %{x}: %{y:,.1f} s per answer<extra></extra>",
            }
        ],
        x_title="batch size",
        y_title="seconds for a whole answer",
        showlegend=False,
        shapes=[
            {
                "type": "line",
                "y0": budget_s,
                "y1": budget_s,
                "x0": 0,
                "x1": 1,
                "xref": "paper",
                "line": {"color": LIMIT_COLOR, "dash": "dot", "width": 3},
            }
        ],
        annotations=[
            {
                "y": budget_s,
                "x": 0,
                "xref": "paper",
                "text": f"{budget_s:g} s budget",
                "showarrow": False,
                "yanchor": "bottom",
                "xanchor": "left",
                "font": {"color": LIMIT_COLOR},
                "bgcolor": "rgba(255, 255, 255, 0.9)",  # readable where it crosses a bar
            }
        ],
    )


def roofline_chart(result: ExperimentResult) -> dict:
    """Measured decode tokens/s against the bandwidth ceiling, per weight format; the ceiling curve for any size."""
    bandwidth = result.details["bandwidth_bytes_per_s"]
    sizes_mb = [row["bytes_per_token"] / 1e6 for row in result.rows]
    low, high = min(sizes_mb) * 0.6, max(sizes_mb) * 1.2
    curve_x = [low + (high - low) * i / 60 for i in range(61)]
    top = max(row["ceiling_tokens_per_s"] for row in result.rows) * 1.15
    return figure(
        [
            line(
                f"ceiling: {bandwidth / 1e9:,.1f} GB/s ÷ bytes per token",
                curve_x,
                [bandwidth / (mb * 1e6) for mb in curve_x],
                color=FORMULA_COLOR,
                dash="dash",
                hover="%{x:,.0f} MB per token: at most %{y:,.1f} tokens/s",
                markers=False,
            ),
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": "measured decode",
                "x": sizes_mb,
                "y": result.column("decode_tokens_per_s"),
                "text": result.column("dtype"),
                "textposition": "top center",
                "marker": {"size": 14, "color": DECODE_COLOR},
                "hovertemplate": "%{text}: %{x:,.0f} MB per token, %{y:,.1f} tokens/s<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "markers",
                "name": "its ceiling",
                "x": sizes_mb,
                "y": result.column("ceiling_tokens_per_s"),
                "marker": {"size": 10, "color": FORMULA_COLOR, "symbol": "line-ew-open", "line": {"width": 3}},
                "hovertemplate": "ceiling at %{x:,.0f} MB per token: %{y:,.1f} tokens/s<extra></extra>",
            },
        ],
        x_title="bytes read per token (MB)",
        y_title="decode tokens per second",
        xaxis=axis("bytes read per token (MB)", rangemode="tozero"),
        yaxis=axis("decode tokens per second", range=[0, top]),
        height=380,
    )


def utilization_chart(result: ExperimentResult) -> dict:
    """Decode's bandwidth utilization (MBU) next to prefill's FLOP utilization (MFU), per weight format."""
    dtypes = result.column("dtype")
    return figure(
        [
            {
                "type": "bar",
                "name": "decode: MBU (share of measured bandwidth)",
                "x": dtypes,
                "y": result.column("mbu"),
                "marker": {"color": DECODE_COLOR},
                "hovertemplate": "%{x}: MBU %{y:.0%}<extra></extra>",
            },
            {
                "type": "bar",
                "name": "prefill: MFU (share of measured matmul FLOP/s)",
                "x": dtypes,
                "y": result.column("mfu"),
                "marker": {"color": PREFILL_COLOR},
                "hovertemplate": "%{x}: MFU %{y:.0%}<extra></extra>",
            },
        ],
        x_title="weight format",
        y_title="utilization",
        barmode="group",
        yaxis=axis("utilization", tickformat=".0%", rangemode="tozero"),
    )


def memory_breakdown_chart(result: ExperimentResult) -> dict:
    """Peak memory of a request and of a training step, stacked by where it goes."""
    modes = {"infer": "one request (inference)", "train": "one training step"}
    rows = {row["mode"]: row for row in result.rows}
    bars = [
        {
            "type": "bar",
            "name": label,
            "x": [modes[mode] for mode in modes],
            "y": [rows[mode][part] / 1e9 for mode in modes],
            "marker": {"color": color},
            "hovertemplate": f"{label}: %{{y:,.3f}} GB<extra></extra>",
        }
        for part, (label, color) in PART_COLORS.items()
    ]
    return figure(bars, x_title="", y_title="peak memory (GB)", barmode="stack", height=380)


def projection_chart(result: ExperimentResult, *, max_users: int) -> dict:
    """This model's serving memory as users grow, against its measured training peak."""
    here = result.details["this_model"]
    users = list(range(0, max_users + 1, max(1, max_users // 40)))
    serving = [(here["serving_base_bytes"] + n * here["kv_bytes_per_user"]) / 1e9 for n in users]
    return figure(
        [
            line(
                f"serving: measured base + N × {here['kv_bytes_per_user'] / 1e6:,.0f} MB of KV cache",
                users,
                serving,
                color=DECODE_COLOR,
                hover="%{x} users: %{y:,.2f} GB",
                markers=False,
            ),
            line(
                "training step (measured peak)",
                [0, max_users],
                [here["training_bytes"] / 1e9] * 2,
                color=TRAIN_COLOR,
                dash="dash",
                hover="training: %{y:,.2f} GB",
                markers=False,
            ),
        ],
        x_title=f"concurrent users, {result.details['context_tokens']:,} tokens of context each",
        y_title="memory (GB)",
        yaxis=axis("memory (GB)", rangemode="tozero"),
    )


def speed_chart(result: ExperimentResult) -> dict:
    """Decode tokens/s per path as bars, with each path's bandwidth ceiling as a tick above it."""
    paths = result.column("path")
    return figure(
        [
            {
                "type": "bar",
                "name": "measured decode",
                "x": paths,
                "y": result.column("decode_tokens_per_s"),
                "marker": {"color": DECODE_COLOR},
                "text": [f"{value:,.1f}" for value in result.column("decode_tokens_per_s")],
                "textposition": "outside",
                "hovertemplate": "%{x}: %{y:,.1f} tokens/s<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "markers",
                "name": "its ceiling (bandwidth ÷ bytes per token)",
                "x": paths,
                "y": result.column("ceiling_tokens_per_s"),
                "marker": {"size": 28, "color": FORMULA_COLOR, "symbol": "line-ew-open", "line": {"width": 3}},
                "hovertemplate": "%{x}: ceiling %{y:,.1f} tokens/s<extra></extra>",
            },
        ],
        x_title="decode path",
        y_title="decode tokens per second",
        yaxis=axis("decode tokens per second", rangemode="tozero"),
        height=380,
    )


def quality_chart(result: ExperimentResult) -> dict:
    """Each path's top-token agreement with eager float32, with the line a faithful path stays above."""
    paths = result.column("path")
    return figure(
        [
            {
                "type": "bar",
                "name": "same top token as eager float32",
                "x": paths,
                "y": result.column("token_agreement"),
                "marker": {"color": PREFILL_COLOR},
                "customdata": [[row["kl_divergence"], row.get("kl_divergence_p99", 0.0)] for row in result.rows],
                "hovertemplate": "%{x}: %{y:.1%} same top token; KL mean %{customdata[0]:.4f}, "
                "p99 %{customdata[1]:.4f} nats<extra></extra>",
            },
            line(f"{FAITHFUL_AGREEMENT:.0%}: the floor this page asks of a path", paths,
                 [FAITHFUL_AGREEMENT] * len(paths), color=LIMIT_COLOR, dash="dash",
                 hover=f"{FAITHFUL_AGREEMENT:.0%}", markers=False),
        ],
        x_title="decode path",
        y_title="same top token",
        yaxis=axis("same top token", tickformat=".0%", range=[0, 1.05]),
        height=380,
    )  # fmt: skip
