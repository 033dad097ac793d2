"""Server-side numbers: sample a serving engine's Prometheus `/metrics` a few times a second while a run streams.

vLLM, SGLang, TGI and llama.cpp's server (with `--metrics`) publish how full their KV cache is and how many
requests run and wait; vLLM also a histogram of its own time to first token. Names differ per server (the table
below, from each project's metrics documentation); the text is parsed with prometheus_client's parser. Ollama and
`transformers serve` publish none: the sampler then says so in one sentence instead of drawing nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

# metric family -> (the server that publishes it, what it measures in our words)
KNOWN_METRICS = {
    "vllm:kv_cache_usage_perc": ("vLLM", "kv_cache_usage"),  # 0..1
    "vllm:gpu_cache_usage_perc": ("vLLM", "kv_cache_usage"),  # its name in older releases
    "vllm:num_requests_running": ("vLLM", "running"),
    "vllm:num_requests_waiting": ("vLLM", "waiting"),
    "vllm:time_to_first_token_seconds": ("vLLM", "ttft_seconds"),  # a histogram: its _sum and _count are kept
    "sglang:token_usage": ("SGLang", "kv_cache_usage"),
    "sglang:num_running_reqs": ("SGLang", "running"),
    "sglang:num_queue_reqs": ("SGLang", "waiting"),
    "tgi_queue_size": ("TGI", "waiting"),
    "tgi_batch_current_size": ("TGI", "running"),
    "llamacpp:requests_processing": ("llama.cpp", "running"),
    "llamacpp:requests_deferred": ("llama.cpp", "waiting"),
}
SAMPLE_INTERVAL_S = 0.25  # four samples a second: enough to see a queue form and drain during one answer


@dataclass(frozen=True, kw_only=True)
class MetricsSample:
    """The known metrics at one moment: summed over their label sets (engines, models), by our name."""

    t_ms: float  # since the sampler started (the run's clock starts at the same moment, give or take a request)
    values: dict[str, float]


def metrics_url(base_url: str) -> str:
    """Where a server publishes its metrics: its root's /metrics (the API lives under /v1)."""
    parts = urlsplit(base_url)
    root = parts.path.removesuffix("/").removesuffix("/v1")
    return urlunsplit((parts.scheme, parts.netloc, f"{root}/metrics", "", ""))


def parse_metrics(text: str) -> tuple[str | None, dict[str, float]]:
    """The server the text comes from and its known metrics by our name (None, {} when it has none we know)."""
    server, values = None, {}
    for family in text_string_to_metric_families(text):
        if family.name not in KNOWN_METRICS:
            continue
        server, name = KNOWN_METRICS[family.name]
        for sample in family.samples:
            if sample.name == family.name:  # a gauge or counter's own value
                values[name] = values.get(name, 0.0) + sample.value
            elif sample.name in (f"{family.name}_sum", f"{family.name}_count"):  # a histogram's running totals
                key = f"{name}_{sample.name.rsplit('_', 1)[1]}"
                values[key] = values.get(key, 0.0) + sample.value
    return server, values


@dataclass(kw_only=True)
class MetricsSampler:
    """Samples a server's metrics on a thread of its own until stopped; `note` says why there are none."""

    url: str
    interval_s: float = SAMPLE_INTERVAL_S
    server: str | None = None
    samples: list[MetricsSample] = field(default_factory=list)
    note: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MetricsSampler:
        """Take one sample now (so a server without metrics is known at once), then keep sampling in the background."""
        self.started_ns = time.perf_counter_ns()  # the samples' clock origin, to line them up with a run's
        self._client = httpx.Client(timeout=httpx.Timeout(max(self.interval_s * 4, 1.0)))
        if self.sample_once():
            self._thread = threading.Thread(target=self._loop, name="metrics-sampler", daemon=True)
            self._thread.start()
        else:
            self._client.close()
        return self

    def stop(self) -> list[MetricsSample]:
        """Take a last sample, stop, and return every sample taken (a second call just returns them)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.sample_once()
            self._client.close()
        return self.samples

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.sample_once():
                return

    def sample_once(self) -> bool:
        """One sample appended; False (with `note` set) when the server has no metrics we can read."""
        try:
            response = self._client.get(self.url)
        except httpx.HTTPError as err:
            self.note = f"no server metrics: {self.url} could not be read ({type(err).__name__})"
            return False
        if response.status_code != 200:
            code = response.status_code
            self.note = f"no server metrics: {self.url} answered {code} (Ollama and transformers serve publish none)"
            return False
        try:
            server, values = parse_metrics(response.text)
        except ValueError as err:
            self.note = f"no server metrics: {self.url} is not in Prometheus' text format ({str(err)[:80]})"
            return False
        if not values:
            self.note = f"no server metrics: {self.url} publishes none of the KV-cache or queue metrics known here"
            return False
        self.server = server
        self.samples.append(MetricsSample(t_ms=(time.perf_counter_ns() - self.started_ns) / 1e6, values=values))
        return True


def server_ttft_ms(samples: list[MetricsSample]) -> float | None:
    """The server's own mean time to first token over the requests it finished between the first and last sample."""
    if len(samples) < 2:
        return None
    first, last = samples[0].values, samples[-1].values
    if "ttft_seconds_count" not in first or "ttft_seconds_count" not in last:
        return None
    requests = last["ttft_seconds_count"] - first["ttft_seconds_count"]
    if requests <= 0:
        return None
    return (last["ttft_seconds_sum"] - first["ttft_seconds_sum"]) / requests * 1000


def metrics_section(sampler: MetricsSampler, *, run_started_ns: int) -> dict:
    """What a trace keeps of the sampling: the server, its samples on the run's clock, its own TTFT, or why none."""
    shift_ms = (run_started_ns - sampler.started_ns) / 1e6  # a sample at the run's start is at t_ms 0
    return {
        "url": sampler.url,
        "server": sampler.server,
        "note": sampler.note,
        "server_ttft_ms": server_ttft_ms(sampler.samples),
        "samples": [{"t_ms": round(sample.t_ms - shift_ms, 3), "values": sample.values} for sample in sampler.samples],
    }
