"""A hosted kitchen in a real browser: a visitor stays the same visitor across a reload (the signed cookie), a
second browser is another visitor, and neither sees the other's prompt on the Runs page."""

from __future__ import annotations

import re

import pytest
from browser import ARTIFACTS, ROOT, chromium, dashboard_server, generate, wait_for_model, wait_until_finished

pytestmark = pytest.mark.slow  # the real default model answers

ANNES_PROMPT = "Anne's private question about soup"


def visitor_shown(page) -> str:
    """The visitor identity the sidebar names."""
    text = page.get_by_text(re.compile("You are visitor")).first.inner_text()
    return re.search(r"You are visitor (\w+)", text).group(1)


def runs_offered(page, url: str) -> list[str]:
    """The runs the Runs page offers this visitor (its picker's options, read from the open list)."""
    page.goto(f"{url}/runs")
    picker = page.get_by_text("Pick one run to open")
    picker.wait_for()
    page.locator("[data-testid=stMultiSelect]").first.click()
    page.locator("[role=option]").first.wait_for()
    options = page.locator("[role=option]").all_inner_texts()
    page.keyboard.press("Escape")
    return [option for option in options if option != "Select all"]


def test_a_hosted_visitor_is_kept_across_a_reload_and_sees_only_their_own_prompts(tmp_path):
    config = tmp_path / "kitchen.toml"  # what the README says to do: copy the example, set mode = "hosted"
    example = (ROOT / "kitchen.example.toml").read_text(encoding="utf-8")
    assert example.count('mode = "local"') == 1
    config.write_text(example.replace('mode = "local"', 'mode = "hosted"'), encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"INFERENCE_KITCHEN_CONFIG": str(config)}
    with dashboard_server(tmp_path / "data", ARTIFACTS / "hosted-server.log", env) as url, chromium() as browser:
        anne = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        anne.goto(url)
        wait_for_model(anne)
        who = visitor_shown(anne)
        anne.reload()
        wait_for_model(anne)
        assert visitor_shown(anne) == who  # the cookie brought the same visitor back
        generate(anne, ANNES_PROMPT, max_new_tokens=4)
        wait_until_finished(anne)

        bert = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()  # another browser's cookies
        bert.goto(url)
        wait_for_model(bert)
        assert visitor_shown(bert) != who
        anne_sees, bert_sees = runs_offered(anne, url), runs_offered(bert, url)
        assert sum(ANNES_PROMPT[:30] in option for option in anne_sees) == 1
        assert not any(ANNES_PROMPT[:20] in option for option in bert_sees)
        assert all("reference:" in option for option in bert_sees), bert_sees  # the shipped references only
        assert ANNES_PROMPT[:20] not in bert.content()
