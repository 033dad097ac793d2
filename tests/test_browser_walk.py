"""The presenter's walk: every page at 1920×1080 (a projector), in normal then presentation mode, in one browser tab.

On each page it does one short thing the way people do (type with the keyboard, click at once), then checks what
is *visible*: no error box, no text cut short with an ellipsis, no chart text overlapping another or sticking out,
token popups fully inside the window, inputs keeping what was typed, and type that grows in presentation mode.
Screenshots of each page in each mode go to test-artifacts/walk-<mode>-<page>.png; `make screenshots` runs this
walk and copies the README's from them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from browser import (
    ARTIFACTS,
    STORY,
    chart_font_sizes,
    chart_text_problems,
    chromium,
    clipped_texts,
    dashboard_server,
    popup_problems,
    shown_errors,
    type_then_click,
    wait_for_model,
    wait_until_finished,
)

from app.site import PAGES

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PROJECTOR = {"width": 1920, "height": 1080}
ORDER = ("live", "runs", "restaurant", "costs", "prefill", "kv-cache", "batch", "roofline", "speed", "train-vs-infer")
PRESENTATION_GROWTH = 1.3  # presentation scales type by 1.45 (charts) and 21/16 (text); 1.3 still catches "no growth"


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """One dashboard and one 1920×1080 tab for the whole walk; yields (page, data folder, what was measured)."""
    workdir = tmp_path_factory.mktemp("walk")
    ARTIFACTS.mkdir(exist_ok=True)
    with dashboard_server(workdir / "data", ARTIFACTS / "walk-server.log") as url, chromium() as browser:
        measured = {}
        first = browser.new_page(viewport=PROJECTOR)  # the server's first visitor opens the Costs page
        began = time.monotonic()
        first.goto(f"{url}/costs")
        first.locator("[data-testid=stMain] h1").first.wait_for(timeout=120_000)
        measured["first_page_s"] = time.monotonic() - began
        page = browser.new_page(viewport=PROJECTOR)
        page.goto(url)
        wait_for_model(page)
        measured["model_ready_s"] = time.monotonic() - began
        first.close()
        yield page, workdir / "data", measured
        page.close()


def settle(page) -> None:
    """Wait until Streamlit has finished redrawing (no element marked stale, no run in progress)."""
    page.wait_for_function(
        """() => !document.querySelector('[data-stale=true]') && !document.querySelector('[data-testid=stSpinner]')
                 && [...document.querySelectorAll('[data-testid=stPlotlyChart]')]
                      .every(chart => chart.querySelector('.main-svg .xtick, .main-svg .ytick'))""",
        timeout=60_000,
    )
    page.wait_for_timeout(700)  # plotly lays out its text after the element appears


def visit(page, key: str) -> None:
    """Open a page from the sidebar menu (a click keeps the visitor's session, unlike typing a URL)."""
    page.locator("[data-testid=stSidebarNav]").get_by_role("link", name=PAGES[key][1], exact=True).click()
    page.wait_for_url(f"**/{key}")
    page.locator("[data-testid=stMain] h1").first.wait_for(timeout=60_000)
    settle(page)


def look(page, key: str, mode: str) -> None:
    """What must hold on every page, in every mode; then the screenshot."""
    assert shown_errors(page) == [], f"{key} ({mode}) shows an error"
    assert clipped_texts(page) == [], f"{key} ({mode}) cuts text short"
    assert chart_text_problems(page) == [], f"{key} ({mode}) has chart text that collides or is cut"
    if mode == "normal":  # seen: a second visitor's sidebar showed an empty Model box over a loaded model
        assert page.get_by_label("Model", exact=True).input_value() == "SmolLM2-135M-Instruct"
    to_top(page)
    page.screenshot(path=str(ARTIFACTS / f"walk-{mode}-{key}.png"))


def to_top(page) -> None:
    """Leave no field focused and scroll back to the page's title: what the room sees on arriving."""
    page.evaluate(
        """() => { document.activeElement && document.activeElement.blur();
                   document.querySelector('[data-testid=stMain] h1').scrollIntoView(); }"""
    )
    page.mouse.move(0, 0)
    page.wait_for_timeout(300)


def number_input(page, label: str):
    return page.get_by_label(label, exact=True).and_(page.locator("input"))


def run_experiment(page, data: Path, name: str, typed: dict[str, str]) -> None:
    """Type each option with the keyboard, press Run at once (the last field commits with the click), wait for it."""
    before = len(list((data / "experiments").glob(f"{name}-*.json")))
    labels = list(typed)
    for label in labels[:-1]:
        field = number_input(page, label)
        field.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(typed[label])
    type_then_click(page, number_input(page, labels[-1]), typed[labels[-1]], "Run experiment")
    for _ in range(600):  # the saved result says it finished (a fragment redraws the page meanwhile)
        if len(list((data / "experiments").glob(f"{name}-*.json"))) > before:
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"{name} did not finish in 5 minutes")
    page.get_by_text("Finding.").first.wait_for(timeout=60_000)
    for label, value in typed.items():
        assert number_input(page, label).input_value() == value, f"{label} did not keep {value}"
    saved = json.loads(sorted((data / "experiments").glob(f"{name}-*.json"))[-1].read_text())
    assert saved["experiment"] == name
    settle(page)


def chips_to_probe(page) -> list[int]:
    """Chips whose popups are the hardest to fit: first, last, the rightmost, and the first of the last row."""
    return page.evaluate(
        """() => {
          const chips = Array.from(document.querySelectorAll('.ik-chip'));
          const boxes = chips.map(c => c.getBoundingClientRect());
          const rightmost = boxes.reduce((best, b, i) => b.right > boxes[best].right ? i : best, 0);
          const lastTop = boxes[boxes.length - 1].top;
          const lastRowFirst = boxes.findIndex(b => Math.abs(b.top - lastTop) < 2);
          return [...new Set([0, chips.length - 1, rightmost, lastRowFirst])];
        }"""
    )


def check_popups(page, where: str) -> None:
    """Hover (and focus, as a keyboard or a tap does) the hardest chips; each popup must be fully visible."""
    chips = page.locator(".ik-chip")
    for index in chips_to_probe(page):
        chip = chips.nth(index)
        chip.scroll_into_view_if_needed()
        chip.hover()
        tip = chip.locator(".ik-tip")
        tip.wait_for(state="visible", timeout=5000)
        assert tip.locator("tr").count() == 5, f"{where}: chip {index}'s popup lacks its five alternatives"
        assert popup_problems(tip) == [], f"{where}: chip {index}'s popup is not fully visible"
    page.mouse.move(0, 0)
    last = chips.nth(chips.count() - 1)
    last.focus()
    assert popup_problems(last.locator(".ik-tip")) == [], f"{where}: the focused last chip's popup is not visible"
    last.blur()


def test_a_page_that_needs_no_model_does_not_wait_for_it(walk):
    """A fresh server's first visitor on the Costs page sees it while the model is still loading (~16 s here)."""
    _, _, measured = walk
    assert measured["first_page_s"] < measured["model_ready_s"], measured
    print(f"fresh server: the Costs page in {measured['first_page_s']:.1f} s, the model ready in "
          f"{measured['model_ready_s']:.1f} s")  # fmt: skip


# ---- normal mode: one action on every page ------------------------------------------------------------------------


def test_normal_mode_live_page_answers_what_was_typed(walk):
    page, data, measured = walk
    visit(page, "live")
    tokens, box = number_input(page, "Max new tokens"), page.get_by_label("Prompt")
    tokens.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("60")
    type_then_click(page, box, STORY, "Generate")
    page.locator(".ik-chip").nth(12).wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "walk-normal-live-cooking.png"))  # mid-answer
    wait_until_finished(page)
    assert box.input_value() == STORY and tokens.input_value() == "60"
    settle(page)
    check_popups(page, "live page")
    measured["live"] = min(chart_font_sizes(page))
    look(page, "live", "normal")


def test_normal_mode_runs_page_opens_the_run_and_keeps_it_across_pages(walk):
    page, _, measured = walk
    visit(page, "runs")
    picker = page.get_by_label("Pick one run to open, or several traces to compare")
    picker.click()
    page.get_by_role("option").filter(has_text=STORY[:30]).first.click()  # (Enter would pick "Select all")
    page.keyboard.press("Escape")
    page.get_by_text("Recorded: 60 tokens.").wait_for(timeout=30_000)
    settle(page)
    label = page.get_by_label("Label", exact=True)
    type_then_click(page, label, "soup story for the talk", "Save label")
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    page.wait_for_function(
        "() => document.body.innerText.includes('soup story for the talk')", timeout=30_000
    )  # the list shows it
    settle(page)
    assert label.input_value() == "soup story for the talk"
    check_popups(page, "runs page")
    measured["runs"] = min(chart_font_sizes(page))
    look(page, "runs", "normal")
    visit(page, "live")
    visit(page, "runs")  # seen: the picked run was forgotten after visiting another page
    page.get_by_text("Recorded: 60 tokens.").wait_for(timeout=30_000)


def test_normal_mode_restaurant_keeps_typed_text_and_counts_it(walk):
    page, _, measured = walk
    visit(page, "restaurant")
    text = "Soup of the day, twice."
    box = page.get_by_label("Your text")
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.locator("[data-testid=stMain] h1").first.click()  # click away at once
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stMetric]')].some(m => m.innerText.includes('tokens in'))"
    )
    settle(page)
    assert box.input_value() == text
    measured["restaurant"] = min(chart_font_sizes(page), default=None)
    look(page, "restaurant", "normal")


def test_normal_mode_costs_page_keeps_the_workload(walk):
    page, _, measured = walk
    visit(page, "costs")
    requests = number_input(page, "Requests per day")
    requests.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("50000")
    page.keyboard.press("Enter")
    settle(page)
    assert requests.input_value() == "50000"
    measured["costs"] = min(chart_font_sizes(page))
    look(page, "costs", "normal")


@pytest.mark.parametrize(
    ("key", "typed"),
    [
        ("prefill", {"Passes per length": "1", "Decode tokens": "4"}),
        ("kv-cache", {"New tokens": "12"}),
        ("batch", {"Decode steps": "4"}),
        ("roofline", {"Repeats": "2", "Decode steps per format": "4"}),
        ("train-vs-infer", {"Training batch (tokens)": "32", "Request's new tokens": "8"}),
    ],
)
def test_normal_mode_each_experiment_runs_with_what_was_typed(walk, key, typed):
    page, data, measured = walk
    visit(page, key)
    run_experiment(page, data, key, typed)
    measured[key] = min(chart_font_sizes(page))
    look(page, key, "normal")


# ---- presentation mode: the same pages, bigger ---------------------------------------------------------------------


def test_presentation_mode_live_answer_fits_the_projector(walk):
    page, _, measured = walk
    visit(page, "live")
    page.get_by_text("Presentation mode").click()
    settle(page)
    type_then_click(page, page.get_by_label("Prompt"), "What is the capital of France?", "Generate")
    wait_until_finished(page)
    page.locator("[data-testid=stPlotlyChart]").nth(3).wait_for(timeout=30_000)  # the finished run's charts
    settle(page)
    to_top(page)
    first_row = page.evaluate(
        """() => { const r = document.querySelector('.ik-chip').getBoundingClientRect(); return r.bottom; }"""
    )
    assert first_row < PROJECTOR["height"], "the answer starts below the fold"
    sizes = page.evaluate(
        """() => ({chip: parseFloat(getComputedStyle(document.querySelector('.ik-chip')).fontSize),
                   card: parseFloat(getComputedStyle(document.querySelector('.ik-value')).fontSize)})"""
    )
    assert sizes["chip"] >= 1.15 * 16 * PRESENTATION_GROWTH and sizes["card"] >= 1.9 * 16 * PRESENTATION_GROWTH
    assert min(chart_font_sizes(page)) >= PRESENTATION_GROWTH * measured["live"]
    check_popups(page, "live page, presentation mode")
    look(page, "live", "presentation")


@pytest.mark.parametrize("key", ORDER[1:])
def test_presentation_mode_every_page_grows_and_nothing_collides(walk, key):
    page, _, measured = walk
    visit(page, key)
    if key == "runs":
        check_popups(page, "runs page, presentation mode")
    if measured.get(key):
        assert min(chart_font_sizes(page)) >= PRESENTATION_GROWTH * measured[key]
    metrics = page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
        ".map(m => parseFloat(getComputedStyle(m).fontSize))"
    )
    assert all(size >= 2.25 * 16 * PRESENTATION_GROWTH for size in metrics), metrics  # Streamlit's is 2.25rem
    look(page, key, "presentation")
