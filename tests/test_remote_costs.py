"""The Costs page prices a server's run and load sweep: as measured at this client, on the hardware the user names."""

from __future__ import annotations

import pytest
from conftest import engine_cli, loopback_server
from streamlit.testing.v1 import AppTest
from test_remote import TinyServer

from engine import costs
from engine.experiments.result import saved_results
from engine.remote import parse_endpoint
from engine.remote_run import run_remote_trace
from engine.trace import default_remote_trace_path, save_trace

H100 = "Datacenter GPU (NVIDIA H100 SXM)"


@pytest.fixture(scope="module")
def server():
    """The tiny server of tests/test_remote.py on a free loopback port."""
    with loopback_server(TinyServer) as url:
        yield url


def sweep(server: str, behaviour: str, levels: str):
    """A server-load result against one of the tiny server's behaviours."""
    from engine.experiments import load_result

    done = engine_cli("experiment", "server-load", "--endpoint", f"{server}/{behaviour}/v1", "--server-model", "m",
                      "--concurrency", levels, "--max-new-tokens", "8")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return load_result(saved_results("server-load")[0])


def test_a_server_run_is_priced_as_measured_with_prefill_estimated_from_its_ttft(server):
    trace = run_remote_trace(parse_endpoint(f"{server}/happy/v1"), "hi", model="m")
    rate, why = costs.throughput_from_server_trace(trace)
    assert why is None and rate.concurrent_requests == 1 and not rate.measured_here
    assert rate.decode_tokens_per_s == trace.summary.decode_tokens_per_s
    assert rate.prefill_tokens_per_s == pytest.approx(9 / (trace.summary.ttft_ms / 1000))  # usage's 9 / TTFT
    assert f"on the server {trace.remote['host']}" in rate.source and "prefill an estimate" in rate.source
    # never scaled by this machine's bandwidth, whatever hardware it is priced on
    here = costs.this_machine(price_per_hour=0.05, power_watts=65)
    here = costs.HardwarePreset(**{**here.__dict__, "bandwidth_bytes_per_s": costs.Figure(value=30e9, source="t")})
    h100 = next(preset for preset in costs.load_presets() if preset.key == "h100")
    assert costs.throughput_on(h100, throughput=rate, here=here) is rate
    measured_here = costs.Throughput(prefill_tokens_per_s=100, decode_tokens_per_s=10, source="here")
    assert costs.throughput_on(h100, throughput=measured_here, here=here).decode_tokens_per_s > 10  # scaled up
    across = dict(costs.cost_across_hardware([h100], throughput=rate, here=here))
    price = h100.price_per_hour.value
    assert across[H100] == pytest.approx(price / (rate.decode_tokens_per_s * 3600) * 1e6)
    # no usage, no prompt count: no prefill figure, and the reason instead of a made-up one
    counted_not = run_remote_trace(parse_endpoint(f"{server}/no-logprobs/v1"), "hi", model="m")
    assert costs.throughput_from_server_trace(counted_not) == (
        None, f"{counted_not.remote['host']} sent no prompt token count (usage), so its prefill speed cannot even be "
        "estimated"
    )  # fmt: skip


def test_a_load_sweep_is_priced_at_its_busiest_whole_level(server):
    result = sweep(server, "steady", "1,2,4")
    rate, why = costs.throughput_from_server_load(result)
    busiest = max(result.rows, key=lambda row: row["tokens_per_s"])
    assert why is None and busiest["concurrency"] == 4  # the steady server batches: 4 at once is the busiest
    assert rate.concurrent_requests == 4 and rate.decode_tokens_per_s == busiest["tokens_per_s"]
    assert rate.prefill_tokens_per_s == pytest.approx(4 * 9 / (busiest["ttft_p90_ms"] / 1000))
    assert "4 stream(s) at once" in rate.source and not rate.measured_here
    # a level with a failed stream is never the one priced; a sweep without usage has no prefill figure
    failed = [{**row, "failed": 1} if row["concurrency"] == 4 else row for row in result.rows]
    rate_without_4, _ = costs.throughput_from_server_load(result.__class__(**{**result.__dict__, "rows": failed}))
    assert rate_without_4.concurrent_requests == 2
    all_failed = [{**row, "failed": 1} for row in result.rows]
    assert costs.throughput_from_server_load(result.__class__(**{**result.__dict__, "rows": all_failed}))[1] == (
        f"every level of the sweep against {result.details['host']} had a failed stream"
    )
    uncounted = sweep(server, "serial", "1,2")
    assert "sent no prompt token count" in costs.throughput_from_server_load(uncounted)[1]


def test_the_costs_page_prices_a_server_run_and_a_sweep_on_the_hardware_named(server):
    trace = run_remote_trace(parse_endpoint(f"{server}/happy/v1"), "hi", model="m")
    save_trace(trace, default_remote_trace_path())
    result = sweep(server, "steady", "1,4")
    at = AppTest.from_file("../pages/costs.py", default_timeout=60).run()
    assert not at.exception
    offered = at.radio(key="costs_throughput_source").options
    assert offered == ["your server run", "your server's load sweep", "typed"]  # nothing local was measured
    at.selectbox(key="costs_hardware").set_value(H100).run()
    for choice, rate in [("your server run", costs.throughput_from_server_trace(trace)[0]),
                         ("your server's load sweep", costs.throughput_from_server_load(result)[0])]:  # fmt: skip
        at.radio(key="costs_throughput_source").set_value(choice).run()
        assert not at.exception
        infos = [info.value for info in at.info]
        assert "whose hardware this page cannot see" in infos[0]
        assert f"**{rate.decode_tokens_per_s:,.1f}** decode tokens/s" in infos[1]  # as measured: not scaled
        assert "scaled to" not in infos[1] and "estimate" in infos[1]  # the prefill figure is one, and says so
        h100 = next(preset for preset in costs.load_presets() if preset.key == "h100")
        per_million = h100.price_per_hour.value / (rate.decode_tokens_per_s * 3600) * 1e6
        card = next(metric for metric in at.metric if metric.label == "cost per million output tokens")
        assert card.value == (f"${per_million:,.2f}" if per_million >= 1 else f"${per_million:,.4f}")
        assert any("not scaled" in caption.value for caption in at.caption)


def test_a_server_run_that_cannot_be_priced_says_why_and_the_page_goes_on(server):
    uncounted = run_remote_trace(parse_endpoint(f"{server}/no-logprobs/v1"), "hi", model="m")
    save_trace(uncounted, default_remote_trace_path())
    at = AppTest.from_file("../pages/costs.py", default_timeout=60).run()
    assert not at.exception
    assert at.radio(key="costs_throughput_source").options == ["typed"]
    said = " ".join(caption.value for caption in at.caption).replace("\\", "")  # the sentence is shown escaped
    assert "Your server run is not offered:" in said and "sent no prompt token count" in said


def test_the_costs_page_prices_the_server_run_picked_newest_complete_first(server):
    from dataclasses import replace

    steady = run_remote_trace(parse_endpoint(f"{server}/steady/v1"), "hi", model="m")  # ~10 tokens/s
    save_trace(steady, default_remote_trace_path())
    happy = run_remote_trace(parse_endpoint(f"{server}/happy/v1"), "hi", model="m")  # faster
    save_trace(happy, default_remote_trace_path())
    broken = replace(happy, remote={**happy.remote, "complete": False})  # a stream that broke: never priced
    save_trace(broken, default_remote_trace_path())
    at = AppTest.from_file("../pages/costs.py", default_timeout=60).run()
    assert not at.exception
    picker = at.selectbox(key="costs_server_run")
    assert len(picker.options) == 2 and picker.index == 0  # the broken one is not offered
    assert picker.options[0].endswith("· 4 tokens") and picker.options[1].endswith("· 3 tokens")  # newest first
    at.selectbox(key="costs_hardware").set_value(H100).run()
    at.radio(key="costs_throughput_source").set_value("your server run").run()
    shown = {}
    for index, trace in [(0, happy), (1, steady)]:
        at.selectbox(key="costs_server_run").set_value(at.selectbox(key="costs_server_run").options[index]).run()
        assert not at.exception
        rate = costs.throughput_from_server_trace(trace)[0]
        shown[index] = at.info[1].value
        assert f"**{rate.decode_tokens_per_s:,.1f}** decode tokens/s" in shown[index]  # the picked run's own rate
    assert shown[0] != shown[1]
