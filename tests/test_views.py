"""The HTML views and chart styling the pages share: what a visitor can tell apart, and type that scales."""

from __future__ import annotations

import html as html_lib

import pytest

from app.presentation import BASE_FONT, sized_fonts
from app.views import token_chips, visible_token
from engine.records import Alternative, TokenRecord


def record(step: int, text: str, alternatives: tuple[str, ...]) -> TokenRecord:
    top = tuple(Alternative(token=t, prob=0.5 / (i + 1)) for i, t in enumerate(alternatives))
    return TokenRecord(
        step=step, phase="prefill" if step == 0 else "decode", token_id=7, text=text, latency_ms=10.0 + step,
        t_ms=10.0 * (step + 1), kv_cache_bytes=0, memory_bytes=0, logprob=-0.7, top=top,
    )  # fmt: skip


def test_alternatives_that_differ_only_by_a_leading_space_look_different():
    """Seen: " Paris" and "Paris" side by side in a popup looked identical."""
    assert visible_token(" Paris") == "␣Paris"
    assert visible_token("Paris") == "Paris"
    assert visible_token("end ") == "end␣"
    assert visible_token("  ") == "␣␣"
    assert visible_token(" <b>\n") == "␣&lt;b&gt;↵"  # still escaped, newline still shown
    html = token_chips([record(0, " The", (" Paris", "Paris", "\n"))], eos_token_ids=())
    assert "<td>␣Paris</td>" in html and "<td>Paris</td>" in html and "<td>↵</td>" in html


def test_a_token_that_is_markup_stays_text():
    html = token_chips([record(0, "<script>alert(1)</script>", ("<img src=x>",))], eos_token_ids=())
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize("size", [BASE_FONT, BASE_FONT * 1.45])
def test_every_chart_text_gets_the_size_streamlit_would_otherwise_override(size):
    """Streamlit's chart theme draws ticks and legends at 12 px unless each one is given a size of its own."""
    layout = {
        "font": {"size": 14},
        "xaxis": {"title": {"text": "step"}},
        "yaxis": {"title": "ms"},
        "yaxis2": {"title": {"text": "MB"}, "overlaying": "y"},
        "legend": {"orientation": "h"},
        "annotations": [{"text": "10 s", "font": {"color": "red"}}, {"text": "note", "font": {"size": 12}}],
    }
    sized = sized_fonts(layout, size=size)
    for name in ("xaxis", "yaxis", "yaxis2"):
        assert sized[name]["tickfont"]["size"] == size
        assert sized[name]["title"]["font"]["size"] == pytest.approx(size * 1.1)
    assert sized["yaxis"]["title"]["text"] == "ms" and sized["yaxis2"]["overlaying"] == "y"
    assert sized["legend"] == {"orientation": "h", "font": {"size": size}}
    assert sized["annotations"][0]["font"] == {"color": "red", "size": size}
    assert sized["annotations"][1]["font"]["size"] == pytest.approx(12 * size / BASE_FONT)  # keeps its proportion


def test_log_axes_get_full_labels_in_one_two_five_steps():
    """Seen: plotly's own log ticks read "2 3 4 … 100 2 3" (and its small minor labels did not grow on a projector)."""
    from engine.figures import log_ticks

    ticks = log_ticks([16, 64, 256, 1024])
    assert ticks["tickvals"] == [10, 20, 50, 100, 200, 500, 1000, 2000]
    assert ticks["ticktext"] == ["10", "20", "50", "100", "200", "500", "1,000", "2,000"]
    assert log_ticks([0.04, 3.7])["ticktext"] == ["0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5"]
    assert log_ticks([0, None]) == {}


HOSTILE_TEXTS = (
    "![pixel](http://evil.example/p.png)",
    "[click](javascript:alert(1))",
    "**bold** _it_ `code` ~~gone~~",
    "<b>tag</b><script>alert(1)</script><img src=x>",
    "# heading",
    "1. a list",
    "- a bullet",
    "> a quote",
    "a | table | row",
    "$E=mc^2$",
    ":smile: &amp; &lt;",
    "http://evil.example and www.evil.example",
    "back\\slash\\*",
    "two\nlines\n# and a heading",
)


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_text_from_a_run_shows_as_itself_inside_markdown(text):
    from markdown_it import MarkdownIt

    from app.text import literal

    rendered = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(f"**Finding.** {literal(text)}")
    body = rendered.strip().removeprefix("<p><strong>Finding.</strong> ").removesuffix("</p>")
    assert html_lib.unescape(body) == text.replace("\n", " ")  # every character shown, nothing interpreted
    for element in ("<a", "<img", "<em", "<code", "<h1", "<script", "<li", "<table", "<s>", "<blockquote"):
        assert element not in body


def test_a_run_name_in_a_chart_legend_stays_text():
    from engine.figures import overlay_chart

    class Run:
        events = (record(0, "a", ()), record(1, "b", ()))

    name = '<a href="http://evil.example">run</a>'
    (line,) = overlay_chart([Run()], [name], metric="latency")["data"]
    assert line["name"] == html_lib.escape(name)
    assert "evil" not in line["hovertemplate"]
