"""Server-side metrics: parsed with Prometheus' own parser, sampled from a real loopback server while time passes."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import pytest
from conftest import loopback_server

from engine.server_metrics import MetricsSampler, metrics_url, parse_metrics, server_ttft_ms

VLLM = """# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} {usage}
vllm:kv_cache_usage_perc{{engine="1",model_name="m"}} {usage}
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="m"}} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="m"}} 1.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{le="0.1",model_name="m"}} 0.0
vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="m"}} {count}
vllm:time_to_first_token_seconds_count{{model_name="m"}} {count}
vllm:time_to_first_token_seconds_sum{{model_name="m"}} {seconds}
# TYPE python_gc_objects_collected counter
python_gc_objects_collected_total{{generation="0"}} 1234.0
"""


def test_each_servers_names_are_read_as_the_same_few_things():
    server, values = parse_metrics(VLLM.format(usage=0.25, count=4.0, seconds=0.8))
    assert server == "vLLM"
    assert values == {"kv_cache_usage": 0.5, "running": 3.0, "waiting": 1.0,  # two engines' usage summed
                      "ttft_seconds_count": 4.0, "ttft_seconds_sum": 0.8}  # fmt: skip
    older = "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.1\n"
    assert parse_metrics(older) == ("vLLM", {"kv_cache_usage": 0.1})
    sglang = "sglang:token_usage 0.3\nsglang:num_running_reqs 2\nsglang:num_queue_reqs 5\n"
    assert parse_metrics(sglang) == ("SGLang", {"kv_cache_usage": 0.3, "running": 2.0, "waiting": 5.0})
    assert parse_metrics("tgi_queue_size 4\ntgi_batch_current_size 8\n") == ("TGI", {"waiting": 4.0, "running": 8.0})
    llama = "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n"
    assert parse_metrics(llama) == ("llama.cpp", {"running": 1.0, "waiting": 0.0})
    assert parse_metrics("python_info 1\n") == (None, {})


def test_the_metrics_live_at_the_servers_root_not_under_the_api():
    assert metrics_url("http://gpu-box:8000/v1") == "http://gpu-box:8000/metrics"
    assert metrics_url("https://host/serving/v1/") == "https://host/serving/metrics"


class MetricsServer(BaseHTTPRequestHandler):
    """/vllm/metrics: vLLM's text, one more finished request (0.2 s to first token) per scrape; others fail."""

    scrapes = 0

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        kind = self.path.strip("/").split("/")[0]
        if kind == "vllm":
            MetricsServer.scrapes += 1
            count = MetricsServer.scrapes
            text = VLLM.format(usage=0.1, count=float(count), seconds=0.2 * count)
        elif kind == "garbage":
            text = "this is { not prometheus\n"
        elif kind == "unknown":
            text = "python_info 1\n"
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    """The metrics server on a free loopback port."""
    with loopback_server(MetricsServer) as url:
        yield url


def test_a_sampler_samples_a_few_times_a_second_and_gives_the_servers_own_ttft(server):
    sampler = MetricsSampler(url=f"{server}/vllm/metrics", interval_s=0.1).start()
    time.sleep(0.55)
    samples = sampler.stop()
    assert sampler.server == "vLLM" and sampler.note is None
    assert 5 <= len(samples) <= 9  # one at start, ~one per 0.1 s, one at stop
    assert [sample.t_ms for sample in samples] == sorted(sample.t_ms for sample in samples)
    assert samples[-1].t_ms - samples[0].t_ms == pytest.approx(550, abs=150)
    assert all(sample.values["kv_cache_usage"] == pytest.approx(0.2) for sample in samples)
    assert server_ttft_ms(samples) == pytest.approx(200)  # (Δ sum) / (Δ count) between the first and last sample
    assert server_ttft_ms(samples[:1]) is None


@pytest.mark.parametrize(
    ("kind", "sentence"),
    [
        ("none", "answered 404 (Ollama and transformers serve publish none)"),
        ("garbage", "is not in Prometheus' text format"),
        ("unknown", "publishes none of the KV-cache or queue metrics"),
    ],
)
def test_a_server_without_metrics_is_said_at_once(server, kind, sentence):
    sampler = MetricsSampler(url=f"{server}/{kind}/metrics", interval_s=0.1).start()
    assert sampler.stop() == [] and sentence in sampler.note and sampler.server is None


def test_a_closed_port_is_no_metrics_not_a_crash():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    sampler = MetricsSampler(url=f"http://127.0.0.1:{closed}/metrics").start()
    assert sampler.stop() == [] and "could not be read (ConnectError)" in sampler.note
