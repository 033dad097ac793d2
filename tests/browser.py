"""Real-browser harness: the dashboard served on a free loopback port, driven by Debian's Chromium via Playwright."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
STORY = "Write a long story about a chef who cooks soup."  # the default model does not stop early on this one
CHROMIUM = "/usr/bin/chromium"  # Playwright's own browser download cannot work on these machines
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require_chromium() -> None:
    """Skip when Chromium is missing on a developer machine; in CI (CI=true) a missing browser is a failure."""
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (.ci/run does)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def dashboard_server(data_dir: Path, log_path: Path, env_extra: dict | None = None, *, poll_s: float = 0.3):
    """Start the dashboard as `make run` does on a free port with its own data folder; yield its URL; stop it after."""
    port = free_port()
    env = {
        **os.environ,
        "INFERENCE_KITCHEN_DATA": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **(env_extra or {}),
    }
    command = [  # what `make run` runs
        sys.executable,
        "-m",
        "app.launch",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start; see {log_path}:\n{log_path.read_text()[-3000:]}")
                time.sleep(poll_s)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


BROWSER_NICENESS = 19


def yield_the_cpu_to_the_dashboard() -> None:
    """Lower this test's Chromium below the dashboard's processes (call it once pages are open: new tabs inherit).

    Visitors' browsers run on their own machines; here they share the server's two cores, and drawing Streamlit's
    page headless costs Chromium ~4-5 s of CPU per page load (measured: a bare Streamlit page ~3 s) and more for
    every live redraw. Lowered, the browser still runs and its drawing still counts in the wall time, but it takes
    the CPU the dashboard leaves, as a visitor's own machine would.

    Playwright starts Chromium in a session of its own (setsid), and where the kernel groups CPU time by session
    (autogroup, on by default in Debian's kernels) a process's niceness only ranks it inside its own session:
    Chromium's session still got half the cores (measured: 24 of 38 CPU-seconds while eight tabs watched the
    kitchen, the worker 11). So the session's group is lowered too (`/proc/<pid>/autogroup`, see sched(7)).
    """
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error, OSError):
            if "chrom" in " ".join(process.cmdline()[:1]).lower():
                process.nice(BROWSER_NICENESS)
                autogroup = Path(f"/proc/{process.pid}/autogroup")
                if autogroup.exists():
                    autogroup.write_text(str(BROWSER_NICENESS))


@contextmanager
def chromium():
    """A headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_for_model(page, timeout_ms: int = 120_000) -> None:
    """Wait until the live page's model has loaded: its prompt box is drawn (it is there while the model loads,
    above the loading bar's place) and no loading bar is left."""
    page.get_by_label("Prompt").wait_for(timeout=timeout_ms)
    page.locator("[data-testid=stProgress]").first.wait_for(state="detached", timeout=timeout_ms)


def generate(page, prompt: str, *, max_new_tokens: int | None = None, settle_ms: int = 400) -> None:
    """Type a prompt (and optionally max new tokens) and press Generate."""
    box = page.get_by_label("Prompt")
    box.fill(prompt)
    box.press("Tab")  # let Streamlit register the text before the click
    if max_new_tokens is not None:
        field = page.get_by_label("Max new tokens")
        field.fill(str(max_new_tokens))
        field.press("Tab")
    page.wait_for_timeout(settle_ms)
    page.get_by_role("button", name="Generate").click()


def wait_until_finished(page, timeout_ms: int = 120_000) -> str:
    """Wait for a finished or stopped run; return the answer text shown in the chips."""
    page.get_by_text("✅ Done").or_(page.get_by_text("⏹ Stopped after")).first.wait_for(timeout=timeout_ms)
    return answer_text(page)


def chip_counts_until_done(page, *, poll_ms: int, max_polls: int) -> list[int]:
    """The answer chips shown at each poll until the run says it is done: how the answer streamed in."""
    counts = []
    while not page.get_by_text("✅ Done").count():
        counts.append(page.locator(".ik-chip").count())
        page.wait_for_timeout(poll_ms)
        assert len(counts) < max_polls, f"the run did not finish in {max_polls} polls"
    return counts


CHIP_LABELS = "Array.from(document.querySelectorAll('.ik-chip')).map(c => c.firstChild ? c.firstChild.textContent : '')"
LAST_CHIP_TEXT = f"{CHIP_LABELS}.at(-1)"  # a JavaScript expression: the newest chip's visible label


def answer_text(page) -> str:
    """The answer as shown: the chips' visible labels joined (popups excluded)."""
    return page.evaluate(f"() => {CHIP_LABELS}.join('')")


def type_then_click(page, field, text: str, button: str) -> None:
    """What people do: click into a field, type with the keyboard, and press the button straight away."""
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.get_by_role("button", name=button).click()  # no Tab, no pause: the field commits as the click lands


def shown_errors(page) -> list[str]:
    """The text of every exception or error box on the page (Streamlit's own and st.error)."""
    return page.locator("[data-testid=stException], [data-testid=stAlertContentError]").all_inner_texts()


def popup_problems(tip) -> list[str]:
    """Why a shown popup is not fully visible: outside the window, or covered or clipped by something else."""
    return tip.evaluate(
        """(tip) => {
          const r = tip.getBoundingClientRect(), problems = [];
          if (r.width < 20 || r.height < 20) return [`popup is ${r.width}x${r.height} px`];
          if (r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight)
            problems.push(`popup ${JSON.stringify(r)} leaves the ${innerWidth}x${innerHeight} window`);
          const inset = 3;
          for (const [x, y] of [[r.left + inset, r.top + inset], [r.right - inset, r.top + inset],
                                [r.left + inset, r.bottom - inset], [r.right - inset, r.bottom - inset],
                                [(r.left + r.right) / 2, (r.top + r.bottom) / 2]]) {
            const hit = document.elementFromPoint(x, y);
            if (!hit || !(hit === tip || tip.contains(hit)))
              problems.push(`at (${x.toFixed(0)}, ${y.toFixed(0)}) one sees `
                            + (hit ? hit.outerHTML.slice(0, 80) : 'nothing'));
          }
          return problems;
        }"""
    )


def clipped_texts(page) -> list[str]:
    """Text cut short on screen: an ellipsis (…) shown where the text does not fit its box."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('[data-testid=stMain] *'))
            .filter(e => getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth + 1
                         && e.innerText.trim())
            .map(e => e.innerText.trim().slice(0, 80))"""
    )


def chart_text_problems(page) -> list[str]:
    """Texts inside a chart that overlap one another or stick out of the chart (tick labels, legend, notes)."""
    return page.evaluate(
        """() => {
          const problems = [];
          const inApp = document.querySelectorAll('[data-testid=stPlotlyChart]');
          (inApp.length ? inApp : document.querySelectorAll('.js-plotly-plot')).forEach((chart, index) => {
            const frame = chart.getBoundingClientRect();
            const boxes = Array.from(chart.querySelectorAll('.main-svg text, .infolayer text'))
              .filter(t => t.textContent.trim() && getComputedStyle(t).visibility !== 'hidden'
                           && getComputedStyle(t).opacity !== '0')
              .map(t => [t.textContent.trim(), t.getBoundingClientRect()])
              .filter(([, b]) => b.width > 0 && b.height > 0);
            for (const [text, b] of boxes)
              if (b.left < frame.left - 1 || b.right > frame.right + 1 || b.top < frame.top - 1 ||
                  b.bottom > frame.bottom + 1)
                problems.push(`chart ${index}: "${text}" sticks out of the chart`);
            for (let i = 0; i < boxes.length; i++)
              for (let j = i + 1; j < boxes.length; j++) {
                const [a, p] = boxes[i], [c, q] = boxes[j];
                const w = Math.min(p.right, q.right) - Math.max(p.left, q.left);
                const h = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
                if (w > 2 && h > 2) problems.push(`chart ${index}: "${a}" overlaps "${c}"`);
              }
          });
          return problems;
        }"""
    )


def chart_font_sizes(page) -> list[float]:
    """The font size (px) of every tick label and legend entry drawn in the page's charts."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll(
              '[data-testid=stPlotlyChart] .xtick text, [data-testid=stPlotlyChart] .ytick text, '
              + '[data-testid=stPlotlyChart] .legendtext'))
            .map(t => parseFloat(getComputedStyle(t).fontSize))"""
    )
