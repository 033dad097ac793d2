"""HTML views that plotly can't draw: the answer as token chips with popups, and the tokenizer view.

The live view is one HTML element (status, chips and numbers together) rather than a dozen Streamlit
elements: every element updated costs the browser work at each redraw, CPU the model needs on a small machine
(measured on 2 cores: 42% -> 30% of a core). For the same reason the stylesheet (CHIP_STYLE) is emitted once
per page run, not with every redraw: re-injecting a <style> makes the browser restyle the whole page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import streamlit as st

from engine import RULE_OF_THUMB_WORDS_PER_TOKEN, TokenPiece, TokenRecord
from engine.tokens import TextTokens

CHIP_STYLE = """
<style>
.ik-chips { line-height: 2.3em; font-size: 1.15rem; }
.ik-chip { position: relative; display: inline-block; padding: 0 .28em; margin: 0 2px 4px 0; border-radius: 6px;
           background: #DCEBF5; border-bottom: 3px solid #2E86AB; white-space: pre; cursor: pointer; color: #102A43; }
.ik-chip.ik-prefill { background: #FBE0D6; border-bottom-color: #E4572E; }
.ik-chip.ik-slow { border-bottom-color: #C0392B; }
.ik-chip .ik-tip { display: none; position: absolute; z-index: 1000; left: 0; top: 2.2em; min-width: 15em;
                   background: #102A43; color: #fff; padding: .5em .7em; border-radius: 6px; font-size: .9rem;
                   line-height: 1.45em; white-space: normal; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
.ik-chip:hover .ik-tip, .ik-chip:focus .ik-tip { display: block; }
.ik-tip table { border-collapse: collapse; width: 100%; margin-top: .3em; }
.ik-tip td { padding: 0 .3em; border: none; color: #fff; }
.ik-bar { display: inline-block; height: .6em; background: #7FC8F8; }
.ik-cards { display: flex; flex-wrap: wrap; gap: .6em 2.2em; margin: .8em 0 .4em 0; }
.ik-card .ik-label { color: #52606D; font-size: .9rem; border-bottom: 1px dotted #9AA5B1; cursor: help; }
.ik-card .ik-value { font-size: 1.9rem; color: #102A43; line-height: 1.3em; }
.ik-status { font-weight: 600; font-size: 1.05rem; margin-bottom: .4em; }
.ik-clock { color: #486581; font-size: .9rem; margin-bottom: .4em; }
.ik-pieces { line-height: 2.1em; font-size: 1.1rem; }
.ik-piece { padding: .1em .05em; border-radius: 4px; white-space: pre-wrap; color: #102A43; }
</style>
"""
# Where a popup goes: CSS alone places it below its chip, where a chip on the last row or at the right edge pushes
# it out of the window (or an ancestor clips it). This script, run once per browser tab, moves the popup of the
# chip under the pointer or keyboard focus to fixed coordinates inside the window: below the chip if it fits,
# else above, shifted left if it would leave the right edge. It reads no page data and writes only styles.
CHIP_SCRIPT = """
<script>
(() => {
  if (window.ikPopups) return;
  window.ikPopups = true;
  const margin = 8;
  const place = (chip) => {
    const tip = chip.querySelector(':scope > .ik-tip');
    if (!tip) return;
    Object.assign(tip.style, {position: 'fixed', display: 'block', visibility: 'hidden', top: '0px', left: '0px'});
    const c = chip.getBoundingClientRect(), t = tip.getBoundingClientRect();
    let top = c.bottom + 4;
    if (top + t.height > innerHeight - margin) top = Math.max(margin, c.top - 4 - t.height);
    const left = Math.max(margin, Math.min(c.left, innerWidth - margin - t.width));
    Object.assign(tip.style, {top: top + 'px', left: left + 'px', display: '', visibility: ''});
  };
  const follow = (event) => {
    const chip = event.target.closest ? event.target.closest('.ik-chip') : null;
    if (chip) place(chip);
  };
  document.addEventListener('mouseover', follow, true);
  document.addEventListener('focusin', follow, true);
  const replace = () => document.querySelectorAll('.ik-chip:hover, .ik-chip:focus').forEach(place);
  document.addEventListener('scroll', replace, true);
  addEventListener('resize', replace);
})();
</script>
"""
PIECE_COLORS = ("#FFE3A3", "#C7F0BD", "#BDE0FE", "#FFC8DD", "#E2CFEA", "#FFD6A5")


def chip_style() -> None:
    """Emit the chips' stylesheet and popup placement once per page run (before any chips are drawn)."""
    st.html(CHIP_STYLE + CHIP_SCRIPT, unsafe_allow_javascript=True)


def visible(text: str) -> str:
    """Token text made safe and visible in HTML: escaped, newlines and tabs shown as symbols."""
    return html.escape(text).replace("\n", "↵").replace("\t", "⇥")


def visible_token(text: str) -> str:
    """A candidate token for the popup's list: like `visible`, and its leading/trailing spaces shown as ␣.

    " Paris" and "Paris" are different tokens (the first starts a new word); in a list of alternatives, without a
    mark they would look the same.
    """
    core = text.strip(" ")
    if not core:
        return "␣" * len(text)
    lead, trail = len(text) - len(text.lstrip(" ")), len(text) - len(text.rstrip(" "))
    return "␣" * lead + visible(core) + "␣" * trail


def token_chips(records: Sequence[TokenRecord], *, eos_token_ids: Sequence[int], rich: bool = True) -> str:
    """The answer as chips; hovering or clicking one shows its latency and the 5 likeliest alternatives.

    rich=False (while a run is live) puts the same facts in a native tooltip: one DOM node per chip instead of
    ~20, rebuilt at every redraw on the CPU the model is using. The finished run gets the rich popups.
    """
    decode = sorted(r.latency_ms for r in records if r.phase == "decode")
    slow_ms = 1.5 * decode[len(decode) // 2] if decode else float("inf")
    chips = []
    for r in records:
        ended = r.token_id in eos_token_ids or (r.token_id is None and r is records[-1])  # a server sends no ids:
        label = visible(r.text) if r.text else ("⏹ end" if ended else "…")  # its empty last token is the end
        rows = "".join(
            f"<tr><td>{visible_token(alt.token) or '∅'}</td><td>{alt.prob:.1%}</td>"
            f"<td><span class='ik-bar' style='width:{max(alt.prob * 80, 1):.0f}px'></span></td></tr>"
            for alt in r.top
        )
        classes = f"ik-chip ik-{r.phase}" + (" ik-slow" if r.phase == "decode" and r.latency_ms > slow_ms else "")
        if not rich:
            alternatives = "\n".join(f"  {alt.token!r} {alt.prob:.1%}" for alt in r.top)
            title = html.escape(
                f"step {r.step} · {r.phase} · {r.latency_ms:.1f} ms\nmost likely:\n{alternatives}", quote=True
            )
            chips.append(f"<span class='{classes}' title='{title}'>{label}</span>")
            continue
        tip = f"<b>step {r.step}</b> · {r.phase} · <b>{r.latency_ms:.1f} ms</b><br>{chosen_line(r)}" + (
            f"<table>{rows}</table>" if rows else "<br><i>no alternatives: the server sent no logprobs</i>"
        )
        chips.append(f"<span class='{classes}' tabindex='0'>{label}<span class='ik-tip'>{tip}</span></span>")
    return f"<div class='ik-chips' data-testid='ik-answer'>{''.join(chips)}</div>"


def chosen_line(record: TokenRecord) -> str:
    """The chip popup's line on the chosen token (a server may send neither its id nor its probability)."""
    token = f"token {record.token_id}" if record.token_id is not None else "token id not sent"
    if record.logprob is None:
        return f"chosen: {token}, probability not sent by the server"
    return f"chosen: {token}, probability {math.exp(record.logprob):.1%}"


def number_cards(cards: Sequence[tuple[str, str, str]]) -> str:
    """Headline numbers as cards: (label, value, explanation shown on hovering the label)."""
    return (
        "<div class='ik-cards'>"
        + "".join(
            "<div class='ik-card'><div class='ik-label' "
            f"title='{html.escape(help_text, quote=True)}'>{html.escape(label)}</div>"
            f"<div class='ik-value'>{html.escape(value)}</div></div>"
            for label, value, help_text in cards
        )
        + "</div>"
    )


def tokenizer_pieces(pieces: Sequence[TokenPiece]) -> str:
    """The prompt as colored pieces, one per token (hover shows the token id)."""
    spans = [
        f"<span class='ik-piece' style='background:{PIECE_COLORS[i % len(PIECE_COLORS)]}' title='token {p.token_id}'>"
        f"{html.escape(p.text) if p.text else '·'}</span>"
        for i, p in enumerate(pieces)
    ]
    return f"<div class='ik-pieces'>{''.join(spans)}</div>"


def token_count_metrics(tokens: TextTokens) -> None:
    """Three metrics: tokens in the text, words per token measured with the model's tokenizer, the rule of thumb."""
    ratio = tokens.words_per_token
    columns = st.columns(3)
    columns[0].metric("tokens in your text", f"{tokens.count:,}")
    columns[1].metric("words per token, measured", f"{ratio:.2f}" if ratio is not None else "n/a")
    columns[2].metric(
        "rule of thumb (seed article)",
        f"{RULE_OF_THUMB_WORDS_PER_TOKEN:.2f}",
        delta=f"{ratio - RULE_OF_THUMB_WORDS_PER_TOKEN:+.2f} here" if ratio is not None else None,
        delta_color="off",
    )
