"""Imports that cannot hurt: a catalogue of hostile files, each refused with one sentence and nothing written; every
file the importer accepts (the smallest of each kind included) draws on every page; an imported run is never
taken as measured on this machine; text in any field is shown as text."""

from __future__ import annotations

import copy
import json
import re

import pytest
from conftest import SMALL, make_tiny_model
from streamlit.testing.v1 import AppTest

from engine import GenerationSettings, TraceFormatError, run_trace
from engine.contract import MAX_DEPTH
from engine.experiments import run_experiment
from engine.experiments.contracts import DETAILS, ROWS
from engine.experiments.result import COMMON_FIELDS
from engine.report import render_report
from engine.store import RunStore
from engine.trace import MODEL, PROMPT

DISTINCT = 4242.4242  # a figure no page may show as measured here once it is only in an imported file
HOSTILE_TEXT = "![x](http://evil.example/i.png) <img src=x onerror=alert(1)> **bold** [link](http://e.example) $x$"


@pytest.fixture(scope="module")
def originals():
    """One real trace and one real result of every experiment (the tiny model), as file dicts."""
    tiny = make_tiny_model(context=1024)
    trace = run_trace(tiny, "soup of the day", settings=GenerationSettings(max_new_tokens=6, stop_at_eos=False))
    files = {"trace": trace.to_dict()}
    for name, options in SMALL.items():
        files[name] = run_experiment(tiny, name, options).to_dict()
    return json.loads(json.dumps(files))


def minimal(value: object, spec: object) -> object:
    """The value with every field its spec marks optional left out (the least a file may hold)."""
    if isinstance(spec, dict) and isinstance(value, dict):
        return {
            key: minimal(value[key], inner)
            for key, inner in spec.items()
            if key in value and value[key] is not None and not getattr(inner, "optional", False)
        }
    return value


def smallest(kind: str, data: dict) -> dict:
    """The smallest file of a kind the contract accepts, built from a real one."""
    data = copy.deepcopy(data)
    common = {"model": minimal(data["model"], MODEL), "hardware": {}, "versions": {}, "settings": {}}
    if kind == "trace":
        keep = ("schema_version", "kind", "created_at", "summary", "finish_reason")
        events = [{key: value for key, value in event.items() if key not in ("batch_size", "step_tokens")}
                  for event in data["events"]]  # fmt: skip
        return {
            **{key: data[key] for key in keep},
            **common,
            "prompt": minimal(data["prompt"], PROMPT),
            "events": events,
        }
    details = {key: minimal(data[key], spec) for key, spec in DETAILS[kind].items() if not getattr(spec, "optional", 0)}
    rows = [minimal(row, ROWS[kind]) for row in data["rows"]]
    return {**{key: data[key] for key in COMMON_FIELDS}, **common, **details, "rows": rows}


def hostile_files(files: dict) -> list[tuple[str, bytes, str]]:
    """(name, bytes, what the refusal must say): files a visitor could upload to break a page or the server."""

    def changed(kind: str, change) -> bytes:
        data = copy.deepcopy(files[kind])
        change(data)
        return json.dumps(data).encode()

    trace_text = json.dumps(files["trace"])
    deep = {"wrapper": 1}
    for _ in range(MAX_DEPTH + 4):
        deep = {"inner": deep}
    return [
        ("deep-arrays.json", b"[" * 200_000 + b"]" * 200_000, "nests lists or objects thousands deep"),
        ("deep-field.json", changed("trace", lambda d: d["settings"].update(x=deep)), f"more than {MAX_DEPTH} deep"),
        ("nan.json", trace_text.replace('"ttft_ms": ', '"ttft_ms": NaN, "y": ', 1).encode(), "holds NaN"),
        ("infinity.json", trace_text.replace('"total_ms": ', '"total_ms": Infinity, "y": ', 1).encode(), "Infinity"),
        ("huge-count.json", changed("trace", lambda d: d["model"].update(context_length=3)),
         "6 token records, more than the model's context of 3"),
        ("logprob.json", changed("trace", lambda d: d["events"][1].update(logprob=1000)),
         r"events\[1\].logprob: 1000 is outside \[-inf, 0\]"),
        ("probability.json", changed("trace", lambda d: d["events"][0]["top"][0].update(prob=1.5)),
         r"events\[0\].top\[0\].prob: 1.5 is outside \[0, 1\]"),
        ("no-layers.json", changed("trace", lambda d: d["model"].pop("layers")),
         "model: the field 'layers' is missing"),
        ("cpu-object.json", changed("trace", lambda d: d["hardware"].update(cpu={"a": 1})),
         "trace.hardware.cpu: expected text"),
        ("settings-object.json", changed("trace", lambda d: d["settings"].update(kv_cache="yes")),
         "trace.settings.kv_cache: expected true or false"),
        ("token-text.json", changed("trace", lambda d: d["events"][2].update(text="x" * 5000)),
         r"events\[2\].text: 5,000 characters"),
        ("no-serving.json", changed("batch", lambda d: d.pop("serving")), "result: the field 'serving' is missing"),
        ("serving-users.json", changed("batch", lambda d: d["serving"].pop("users")),
         "result.serving: the field 'users' is missing"),
        ("kv-runs.json", changed("kv-cache", lambda d: d["runs"].pop("on")), "result.runs: the field 'on' is missing"),
        ("mbu.json", changed("roofline", lambda d: d["rows"][0].update(mbu=1e9)),
         r"rows\[0\].mbu: 1000000000.0 is outside \[0, 1.5\]"),
        ("published.json", changed("train-vs-infer", lambda d: d.update(published_models={"a": 1})),
         "result.published_models: expected a list"),
        ("row-object.json", changed("prefill", lambda d: d["rows"][0].update(x=[1])),
         r"rows\[0\].x: expected a number"),
        ("negative-flops.json", changed("roofline", lambda d: d.update(peak_flops=-1)), "peak_flops: -1 is outside"),
        ("energy-rows.json", changed("energy", lambda d: d["rows"][0].update(tokens="many")),
         r"rows\[0\].tokens: expected a whole number"),
    ]  # fmt: skip


def store_state(store: RunStore) -> dict:
    """Every file in the data folder with its bytes (what a refusal must leave unchanged)."""
    return {str(path): path.read_bytes() for path in store.root.rglob("*") if path.is_file()}


def test_every_real_file_and_its_smallest_form_is_accepted(originals):
    store = RunStore()
    for kind, data in originals.items():
        store.import_bytes(json.dumps(data).encode(), filename=f"{kind}.json")
        store.import_bytes(json.dumps(smallest(kind, data)).encode(), filename=f"smallest-{kind}.json")
    entries, problems = store.list()
    assert problems == [] and len(entries) == 2 * len(originals)


def test_a_catalogue_of_hostile_imports_is_refused_in_one_sentence_changing_nothing(originals):
    store = RunStore()
    store.import_bytes(json.dumps(originals["trace"]).encode(), filename="fine.json")
    before = store_state(store)
    catalogue = hostile_files(originals)
    assert len(catalogue) >= 15
    for name, raw, message in catalogue:
        with pytest.raises(TraceFormatError, match=message) as refused:
            store.import_bytes(raw, filename=name)
        assert "\n" not in str(refused.value), name
        assert store_state(store) == before, f"{name} changed the data folder"


@pytest.mark.usefixtures("fresh_kitchen")
def test_every_importable_file_draws_on_every_page_and_is_never_measured_here(originals):
    store = RunStore()
    imported = {}
    for kind, data in originals.items():
        for form, content in (("full", data), ("smallest", smallest(kind, data))):
            content = copy.deepcopy(content)
            if kind == "batch":
                content["rows"][0]["tokens_per_s"] = DISTINCT
            imported[f"{form}-{kind}"] = store.import_bytes(
                json.dumps(content).encode(), filename=f"{form}-{kind}.json"
            )
    for name, relative in imported.items():
        at = AppTest.from_file("../pages/runs.py", default_timeout=60)
        at.session_state["runs_selected"] = [relative]
        at.run()
        assert not at.exception, (name, at.exception)
        assert at.multiselect(key="runs_selected").value == [relative]
        assert "imported" in at.multiselect(key="runs_selected").format_func(relative)
    traces = [imported["full-trace"], imported["smallest-trace"]]
    at = AppTest.from_file("../pages/runs.py", default_timeout=60)
    at.session_state["runs_selected"] = traces
    at.run()
    assert not at.exception  # compared side by side, with the HTML report of both
    names = "\n".join(text.value for text in at.text)
    assert "run 1 (imported): " in names and "run 2 (imported): " in names
    for page in ("costs", "restaurant", "batch", "kv_cache", "prefill", "roofline", "train_vs_infer"):
        at = AppTest.from_file(f"../pages/{page}.py", default_timeout=60).run()
        assert not at.exception, (page, at.exception)
        shown = " ".join(str(element.value) for element in (*at.markdown, *at.metric, *at.caption, *at.text))
        assert "4,242" not in shown and "4242" not in shown, f"the {page} page took an imported figure as measured"


def test_text_in_every_field_of_an_accepted_file_is_shown_as_text(originals):
    data = copy.deepcopy(originals["trace"])
    data["prompt"]["text"] = HOSTILE_TEXT
    data["model"]["name"] = HOSTILE_TEXT[:150]
    data["hardware"]["cpu"] = HOSTILE_TEXT
    data["versions"]["engine"] = HOSTILE_TEXT[:150]
    for event in data["events"]:
        event["text"] = "<b>x</b>![y](http://e.example/y.png)"
    store = RunStore()
    relative = store.import_bytes(json.dumps(data).encode(), filename=f"{HOSTILE_TEXT[:40]}.json")
    at = AppTest.from_file("../pages/runs.py", default_timeout=60)
    at.session_state["runs_selected"] = [relative]
    at.run()
    assert not at.exception
    for element in (*at.markdown, *at.caption, *at.success, *at.info, *at.warning):
        body = element.value
        assert "![x](http" not in body and "![y](http" not in body, body  # escaped: \!\[x\]… shows the marks
        assert not re.search(r"(?<!\\)<(img|b)\b", body), body  # an HTML tag only as escaped text
    html = "\n".join(element.proto.body for element in at.get("html"))
    assert "<img src=x" not in html and "<b>x</b>" not in html
    report = render_report([store.open(relative)], imported=[True])  # the HTML report a visitor downloads
    assert "run 1 (imported): " in report
    assert "<img src=x" not in report and "<b>x</b>" not in report  # HTML reads no Markdown: only tags matter
    assert "&lt;img src=x" in report  # shown, as text
