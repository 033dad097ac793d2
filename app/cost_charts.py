"""Plotly figures for the Costs page (plain dict specs, like engine.figures)."""

from __future__ import annotations

import textwrap

from engine.figures import DECODE_COLOR, FORMULA_COLOR, PREFILL_COLOR, axis, figure, log_ticks

ARTICLE_COLOR = "#ADB5BD"


def cost_across_hardware_chart(names: list[str], costs: list[float], labels: list[str], *, chosen: str) -> dict:
    """Cost per million output tokens on each machine; the chosen one highlighted."""
    colors = [PREFILL_COLOR if name == chosen else DECODE_COLOR for name in names]
    # names wrapped on a few short lines, level: slanted long names collided and squeezed the axis title away
    wrapped = ["<br>".join(textwrap.wrap(name, 16)) for name in names]
    return figure(
        [
            {
                "type": "bar",
                "x": wrapped,
                "y": costs,
                "text": labels,
                "textposition": "outside",
                "marker": {"color": colors},
                "hovertemplate": "%{x}: $%{y:,.3f} per million tokens<extra></extra>",
            }
        ],
        x_title="",
        y_title="$ per million output tokens",
        showlegend=False,
        height=400,
        xaxis=axis("", tickangle=0),
        yaxis=axis("$ per 1M output tokens (log scale)", type="log", **log_ticks(costs)),
    )


def cost_by_batch_chart(batch_sizes: list[int], costs: list[float]) -> dict:
    """How the cost per million tokens falls as one machine cooks for more tables at once."""
    return figure(
        [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": batch_sizes,
                "y": costs,
                "line": {"color": DECODE_COLOR},
                "hovertemplate": "batch %{x}: $%{y:,.3f} per million tokens<extra></extra>",
                "name": "cost",
            }
        ],
        x_title="batch size (users served at once)",
        y_title="$ per million output tokens",
        showlegend=False,
        xaxis=axis("batch size (users served at once)", type="log", tickvals=batch_sizes),
        yaxis=axis("$ per million output tokens", rangemode="tozero"),
    )


def market_chart(market: dict) -> dict:
    """The seed article's cited analyst projection: inference vs training capital spending."""
    return figure(
        [
            {
                "type": "bar",
                "x": ["training", "inference"],
                "y": [market["training_capex_usd"] / 1e9, market["inference_capex_usd"] / 1e9],
                "marker": {"color": [FORMULA_COLOR, ARTICLE_COLOR], "pattern": {"shape": ["/", "/"]}},
                "text": [
                    f"~${market['training_capex_usd'] / 1e9:,.0f}B",
                    f"~${market['inference_capex_usd'] / 1e9:,.0f}B",
                ],
                "textposition": "outside",
                "hovertemplate": "%{x}: ~$%{y:,.0f}B (analyst projection cited by the seed article)<extra></extra>",
            }
        ],
        x_title="",
        y_title=f"capital spending by {market['year']} ($B)",
        showlegend=False,
        height=300,
        title={"text": "Analyst projection cited by the seed article<br>(not measured here)", "font": {"size": 13}},
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
