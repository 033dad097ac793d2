"""The remote kitchen's client against real sockets: a tiny server that streams, fails or breaks on purpose."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from conftest import engine_cli, loopback_server

from engine.remote import RemoteEnd, RemoteError, RemoteToken, parse_endpoint, stream_chat
from engine.trace import Trace, default_remote_trace_path, load_trace, save_trace
from engine.units import fmt_ms

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def logprob_entry(token: str, logprob: float) -> dict:
    """One token's logprobs as OpenAI's API sends them, with two alternatives."""
    return {"token": token, "logprob": logprob, "top_logprobs": [{"token": token, "logprob": logprob},
                                                                  {"token": " Lyon", "logprob": -3.0}]}  # fmt: skip


def chunk(content: str | None = None, *, entries: list | None = None, finish: str | None = None, **extra) -> dict:
    """A chat.completion.chunk with one choice."""
    delta = {"content": content} if content is not None else ({} if finish else {"role": "assistant"})
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    if entries is not None:
        choice["logprobs"] = {"content": entries}
    return {"id": "c1", "object": "chat.completion.chunk", "model": "tiny-server", "choices": [choice], **extra}


# What each behaviour sends after its headers: events (dicts become JSON), pauses (floats, seconds), raw bytes.
HAPPY = [
    chunk(),
    chunk("The", entries=[logprob_entry("The", -0.1)]),
    0.05,
    chunk(" capital is", entries=[logprob_entry(" capital", -0.2), logprob_entry(" is", -0.3)]),
    0.05,
    chunk(" Paris", entries=[logprob_entry(" Paris", -0.05)]),
    chunk("", finish="stop"),
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "tiny-server",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    },  # fmt: skip
    "[DONE]",
]
USAGE_OF_3 = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
BEHAVIOURS = {
    "happy": HAPPY,
    "no-logprobs": [chunk("Paris"), chunk(" is"), chunk(" it", finish="stop"), "[DONE]"],
    "no-done": [chunk("Paris"), chunk(" is")],
    "like-transformers-serve": [  # the end token counted in usage but sent as an empty finish chunk; no [DONE]
        chunk(),
        chunk("Paris"),
        chunk("."),
        0.03,
        chunk(None, finish="stop", usage={"completion_tokens": 3, "prompt_tokens": 9, "total_tokens": 12}),
    ],
    "broken": [chunk("Paris"), chunk(" is"), b"BREAK"],
    "malformed": [chunk("Paris"), "{not json"],
    "error-event": [chunk("Paris"), {"error": {"message": "CUDA out of memory", "code": 500}}],
    "slow": [chunk("Paris"), 3.0, chunk(" is"), "[DONE]"],
    "with-metrics": [chunk("Paris"), 0.4, chunk(" is"), 0.4, chunk(" it", finish="stop"), "[DONE]"],
    "vllm": [  # /metrics too, and vLLM's per-request timing (--enable-per-request-metrics) with the usage
        0.3,
        chunk("Paris"),
        0.3,
        chunk(" is", finish="stop"),
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "model": "tiny-server",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
            "metrics": {
                "time_to_first_token_ms": 30.0,
                "queue_time_ms": 20.0,
                "generation_time_ms": 300.0,
                "mean_itl_ms": None,
                "tokens_per_second": "fast",
                "made_up_ms": 5.0,
            },
        },
        "[DONE]",
    ],  # fmt: skip
    "raw": [  # the legacy completions API: text in the choice, logprobs as parallel lists
        {
            "object": "text_completion",
            "model": "tiny-server",
            "choices": [
                {
                    "index": 0,
                    "text": " Paris is",
                    "finish_reason": None,
                    "logprobs": {
                        "tokens": [" Paris", " is"],
                        "token_logprobs": [-0.1, -0.4],
                        "top_logprobs": [{" Paris": -0.1, " Lyon": -2.5}, {" is": -0.4}],
                    },
                }
            ],
        },
        {
            "object": "text_completion",
            "model": "tiny-server",
            "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        },
        "[DONE]",
    ],  # fmt: skip
    "steady": [0.1, chunk("Paris"), 0.1, chunk(" is"), 0.1, chunk(" it", finish="stop", usage=USAGE_OF_3), "[DONE]"],
    "serial": [0.2, chunk("Paris"), 0.2, chunk(" is"), 0.2, chunk(" it", finish="stop"), "[DONE]"],  # one at a time
}


class TinyServer(BaseHTTPRequestHandler):
    """Answers /<behaviour>/v1/chat/completions, or /status/<code>/v1/... with that status."""

    protocol_version = "HTTP/1.1"
    scrapes = 0
    serial = threading.Lock()
    posts: dict[str, int] = {}  # requests per behaviour

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        """/<behaviour>/v1/models: two models; /with-metrics/metrics and /vllm/metrics: vLLM's names, one more
        running request per scrape; any other: 404."""
        if self.path.startswith("/status/"):
            self.send_status(int(self.path.split("/")[2]))
            return
        if self.path.endswith("/v1/models"):
            body = json.dumps({"object": "list", "data": [{"id": "tiny-server"}, {"id": "<i>other</i>"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path not in ("/with-metrics/metrics", "/vllm/metrics"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        TinyServer.scrapes += 1
        body = (f"vllm:num_requests_running {TinyServer.scrapes}\nvllm:kv_cache_usage_perc 0.5\n"
                "# TYPE vllm:time_to_first_token_seconds histogram\n"
                f"vllm:time_to_first_token_seconds_count {TinyServer.scrapes}\n"
                f"vllm:time_to_first_token_seconds_sum {0.12 * TinyServer.scrapes}\n").encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_status(self, code: int) -> None:
        """An OpenAI-style error body with this status."""
        body = json.dumps({"error": {"message": f"made-up failure {code}"}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = self.path.strip("/").split("/")
        TinyServer.posts[parts[0]] = TinyServer.posts.get(parts[0], 0) + 1
        if (parts[0] == "raw") != (parts[-2:] == ["v1", "completions"]):  # raw only on /completions, chat elsewhere
            self.send_status(404)
            return
        if parts[0] == "status":
            self.send_status(int(parts[1]))
            return
        with TinyServer.serial if parts[0] == "serial" else contextlib.nullcontext():  # serial: one stream at once
            self.stream(BEHAVIOURS[parts[0]])

    def stream(self, behaviour: list) -> None:
        """Send a behaviour's events as a chunked event stream."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for item in behaviour:
            if isinstance(item, float):
                time.sleep(item)
                continue
            if item == b"BREAK":  # close mid-stream: no [DONE], no chunked-encoding terminator
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = item if isinstance(item, str) else json.dumps(item)
            payload = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")  # the stream's clean end (with or without [DONE] before it)
        self.wfile.flush()


@pytest.fixture(scope="module")
def server():
    """The tiny server on a free loopback port."""
    with loopback_server(TinyServer) as url:
        yield url


def run(url: str, **options) -> tuple[list[RemoteToken], RemoteEnd]:
    """Stream one chat to the end: its tokens and how it ended."""
    items = list(stream_chat(parse_endpoint(url), model="tiny-server", messages=MESSAGES, max_tokens=16, **options))
    return [item for item in items if isinstance(item, RemoteToken)], items[-1]


def failure(url: str, **options) -> RemoteError:
    """The RemoteError a stream ends with."""
    with pytest.raises(RemoteError) as caught:
        run(url, **options)
    return caught.value


def test_tokens_arrive_timed_at_the_client_and_a_shared_chunk_is_split_and_flagged(server):
    tokens, end = run(f"{server}/happy/v1")
    assert "".join(token.text for token in tokens) == "The capital is Paris"
    assert len(tokens) == end.usage["completion_tokens"] == 4 and end.finish_reason == "stop"
    assert end.model == "tiny-server"
    assert [token.shared_chunk for token in tokens] == [False, True, True, False]
    assert [token.chunk for token in tokens] == [0, 1, 1, 2]
    times = [token.t_ms for token in tokens]
    assert times == sorted(times)
    assert times[2] - times[0] >= 45  # the server's 50 ms pause shows in the client's clock
    assert times[1] == pytest.approx((times[0] + times[2]) / 2)  # a shared chunk's time spread evenly since the last
    assert tokens[3].logprob == -0.05 and tokens[3].top[1].token == " Lyon"
    assert tokens[3].top[1].prob == pytest.approx(0.0498, abs=1e-3)


def test_a_finish_chunk_ends_a_stream_without_done_and_the_counted_end_token_is_recorded(server):
    tokens, end = run(f"{server}/like-transformers-serve/v1")
    assert [token.text for token in tokens] == ["Paris", ".", ""] and end.finish_reason == "stop"
    assert [token.end_token for token in tokens] == [False, False, True]
    assert len(tokens) == end.usage["completion_tokens"]
    assert tokens[2].t_ms - tokens[1].t_ms >= 25  # it arrived with the finish chunk, after the 30 ms pause


def test_a_server_without_logprobs_gives_one_token_per_chunk_and_no_alternatives(server):
    tokens, end = run(f"{server}/no-logprobs/v1")
    assert [token.text for token in tokens] == ["Paris", " is", " it"]
    assert all(token.logprob is None and token.top == () and not token.shared_chunk for token in tokens)
    assert end.usage is None  # nothing to check the count against: the caller says so


@pytest.mark.parametrize(
    ("behaviour", "sentence", "kept"),
    [
        ("no-done", "ended without a finish reason or [DONE] after 2 tokens", 2),
        ("broken", "broke after 2 tokens", 2),
        ("malformed", "not JSON after 1 tokens", 1),
        ("error-event", "error mid-stream after 1 tokens: CUDA out of memory", 1),
    ],
)
def test_a_stream_that_breaks_is_one_sentence_and_keeps_its_tokens(server, behaviour, sentence, kept):
    err = failure(f"{server}/{behaviour}/v1")
    assert sentence in str(err) and "\n" not in str(err)
    assert [token.text for token in err.tokens][:1] == ["Paris"] and len(err.tokens) == kept


@pytest.mark.parametrize(
    ("code", "sentence"),
    [
        (401, "refused the request (401): check the API key"),
        (403, "refused the request (403): check the API key"),
        (404, "has no model 'tiny-server'"),
        (429, "limiting requests (429)"),
        (500, "failed on its side (500): made-up failure 500"),
        (503, "failed on its side (503)"),
    ],
)
def test_each_refusing_status_is_a_sentence_the_user_can_act_on(server, code, sentence):
    err = failure(f"{server}/status/{code}/v1")
    assert sentence in str(err) and err.tokens == ()


def test_a_closed_port_a_missing_host_and_a_silent_server_each_say_so(server):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert "could not connect to 127.0.0.1:" in str(failure(f"http://127.0.0.1:{closed}/v1"))
    assert "could not find the host 'no-such-kitchen.invalid' (DNS)" in str(
        failure("http://no-such-kitchen.invalid/v1")
    )
    started = time.monotonic()
    err = failure(f"{server}/slow/v1", timeout_s=0.5)
    assert "did not answer in time after 1 tokens" in str(err) and time.monotonic() - started < 2.5


def test_an_address_is_checked_before_any_request_and_a_key_never_shows():
    for bad in ["", "localhost:8000", "ftp://host/v1", "http:///v1"]:
        with pytest.raises(RemoteError, match="is not a server address"):
            parse_endpoint(bad)
    with pytest.raises(RemoteError, match="must not contain a user name or password"):
        parse_endpoint("http://user:secret@host:8000/v1")
    endpoint = parse_endpoint("https://gpu-box.example:8000/v1/", api_key="sk-secret")
    assert endpoint.base_url == "https://gpu-box.example:8000/v1" and endpoint.host == "gpu-box.example:8000"
    assert "sk-secret" not in repr(endpoint) and endpoint.headers() == {"Authorization": "Bearer sk-secret"}


def test_the_cli_writes_a_remote_trace_with_shared_chunks_flagged_and_alternatives_kept(server, tmp_path):
    out = tmp_path / "remote.json"
    done = engine_cli("trace", "--endpoint", f"{server}/happy/v1", "--model", "tiny-server", "--prompt", "Capital?",
                      "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    trace = load_trace(out)
    assert trace.answer == "The capital is Paris" and trace.finish_reason == "eos"
    assert trace.settings == {"max_new_tokens": 64, "temperature": 0.0, "chat_template": True}  # what was sent
    assert [event.shared_chunk for event in trace.events] == [False, True, True, False]
    assert trace.remote["shared_chunks"] == 2 and trace.remote["logprobs"]
    assert trace.remote["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    assert trace.events[3].top[0].token == " Paris" and trace.events[3].logprob == -0.05
    assert "4 tokens arrived, as many as the server's usage counts" in done.stdout


def test_a_servers_metrics_are_sampled_during_the_run_on_its_clock_and_their_absence_is_said(server):
    from engine.remote_run import run_remote_trace

    trace = run_remote_trace(parse_endpoint(f"{server}/with-metrics/v1"), "hi", model="m")
    metrics = trace.remote["metrics"]
    assert metrics["server"] == "vLLM" and metrics["note"] is None
    assert metrics["url"].endswith("/with-metrics/metrics")
    times = [sample["t_ms"] for sample in metrics["samples"]]
    assert 4 <= len(times) <= 7  # one before, ~4 a second over the ~0.8 s stream, one after
    assert times[0] <= 0 < times[1] and times[-1] >= trace.events[-1].t_ms  # on the run's clock
    assert metrics["server_ttft_ms"] == pytest.approx(120)  # vLLM's own figure, from its histogram's totals
    assert Trace.from_dict(trace.to_dict()).remote["metrics"] == metrics  # the contract holds it
    plain = run_remote_trace(parse_endpoint(f"{server}/happy/v1"), "hi", model="m").remote["metrics"]
    assert plain["samples"] == [] and "answered 404" in plain["note"]


def test_the_store_lists_imports_and_reports_a_remote_trace_saying_what_a_client_cannot_know(server, tmp_path):
    from engine.store import RunStore
    from engine.trace import data_dir

    done = engine_cli("trace", "--endpoint", f"{server}/happy/v1", "--model", "m", "--prompt", "<b>hi</b>")
    assert done.returncode == 0  # saved where the store looks: remote/
    entries, problems = RunStore().list()
    assert problems == [] and [entry.path.split("/")[0] for entry in entries] == ["remote"]
    listed = entries[0]
    assert listed.device.startswith("server 127.0.0.1:") and listed.hardware == "remote"
    assert listed.headline["tokens"] == 4
    saved = data_dir() / listed.path
    other = RunStore(tmp_path / "store")
    relative = other.import_bytes(saved.read_bytes(), filename="theirs.json", owner="visitor")
    assert relative.startswith("remote/imported-") and other.open(relative).remote["host"] == listed.device[7:]
    report = engine_cli("report", str(saved), "--out", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "measured at the client" in page and "4 tokens arrived, as many as the server" in page
    assert "does not tell a client how big its KV cache is" in page
    assert "<h3>KV cache</h3>" not in page and "<h3>Memory</h3>" not in page  # no empty charts
    assert "<h3>Latency of every token</h3>" in page and "&lt;b&gt;hi&lt;/b&gt;" in page  # the prompt stays text


def test_the_runs_page_opens_replays_and_compares_a_remote_trace_with_a_local_one(server):
    from conftest import make_tiny_model
    from streamlit.testing.v1 import AppTest

    from engine import GenerationSettings, run_trace, save_trace
    from engine.trace import default_trace_path

    assert engine_cli("trace", "--endpoint", f"{server}/happy/v1", "--model", "m", "--prompt", "hi",
                      "--out", str(default_remote_trace_path())).returncode == 0  # fmt: skip
    local = save_trace(run_trace(make_tiny_model(context=512), "hi", settings=GenerationSettings(max_new_tokens=6)),
                       default_trace_path())  # fmt: skip
    from engine.store import RunStore

    remote = next(entry.path for entry in RunStore().list()[0] if entry.path.startswith("remote/"))
    at = AppTest.from_file("../pages/runs.py", default_timeout=30).run()
    assert any("server 127.0.0.1" in option for option in at.multiselect(key="runs_selected").options)
    at.multiselect(key="runs_selected").set_value([remote]).run()
    assert not at.exception
    shown = "".join(h.proto.body for h in at.get("html"))
    assert "Times measured at the client" in shown and "Paris" in shown
    assert "token id not sent" in shown and "Lyon" in shown  # the server's alternatives are kept, its ids are not
    said = [info.value for info in at.info]
    assert any("how big its KV cache is" in text for text in said) and any("how much memory" in text for text in said)
    assert len(at.get("plotly_chart")) == 3  # the budget, latency and tokens over time: nothing drawn empty
    at.button(key="runs_replay").click().run()
    assert not at.exception
    at.multiselect(key="runs_selected").set_value([remote, f"traces/{local.name}"]).run()
    assert not at.exception
    names = at.text[-1].value
    assert "the server 127.0.0.1:" in names and "this machine's model" in names
    table = at.dataframe[-1].value
    peak = table[table["figure"] == "peak memory"]
    assert peak["run 1"].item() == "n/a" and peak["run 2 ÷ run 1"].item() == "n/a"  # not known: no ratio invented
    kv_chart = next(c for c in at.get("plotly_chart") if "KV cache (MB)" in c.proto.spec)
    remote_line, local_line = json.loads(kv_chart.proto.spec)["data"]
    assert remote_line["name"].endswith("(not sent by the server)") and set(remote_line["y"]) == {None}
    assert all(value > 0 for value in local_line["y"])


def test_the_cli_keeps_a_broken_streams_tokens_marked_incomplete_and_exits_2(server, tmp_path):
    out = tmp_path / "partial.json"
    done = engine_cli("trace", "--endpoint", f"{server}/broken/v1", "--model", "tiny-server", "--prompt", "hi",
                      "--out", str(out))  # fmt: skip
    assert done.returncode == 2
    assert "broke after 2 tokens" in done.stderr and "kept, marked incomplete" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    trace = load_trace(out)
    assert not trace.remote["complete"] and trace.finish_reason == "stopped" and trace.answer == "Paris is"
    assert "broke after 2 tokens" in trace.remote["error"]
    counted = run(f"{server}/no-logprobs/v1")[1]  # no usage: the count cannot be checked, and the trace says so
    assert counted.usage is None


def test_the_cli_says_a_refused_connection_in_one_line_and_writes_nothing(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    out = tmp_path / "nothing.json"
    done = engine_cli("trace", "--endpoint", f"http://127.0.0.1:{closed}/v1", "--model", "m", "--prompt", "hi",
                      "--out", str(out))  # fmt: skip
    assert done.returncode == 2 and not out.exists()
    assert done.stderr.startswith("error: could not connect to 127.0.0.1:") and len(done.stderr.splitlines()) == 1
    no_model = engine_cli("trace", "--endpoint", f"http://127.0.0.1:{closed}/v1", "--prompt", "hi")
    assert no_model.returncode == 2 and "--endpoint needs --model" in no_model.stderr
    local = engine_cli("trace", "--endpoint", f"http://127.0.0.1:{closed}/v1", "--model", "m", "--prompt", "hi",
                       "--top-k", "5", "--seed", "3")  # fmt: skip
    assert local.returncode == 2 and "--top-k, --seed only apply to a model run here" in local.stderr


def test_the_models_a_server_lists_are_read_and_a_listing_failure_is_one_sentence(server):
    from engine.remote import list_models

    assert list_models(parse_endpoint(f"{server}/happy/v1")) == ["<i>other</i>", "tiny-server"]
    with pytest.raises(RemoteError, match=r"refused the request \(401\): check the API key"):
        list_models(parse_endpoint(f"{server}/status/401/v1"))
    with pytest.raises(RemoteError, match="could not connect"):
        list_models(parse_endpoint(f"http://127.0.0.1:{closed_port()}/v1"))


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_app(url: str, *, model: str = "tiny-server", key: str | None = None, page: str = "../app/main.py"):
    """The dashboard (or one page) under AppTest with the sidebar's kitchen set to a server (before the first run)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(page, default_timeout=30)
    at.session_state["sidebar_kitchen"] = "a server"
    at.session_state["sidebar_server_url"] = url
    at.session_state["sidebar_server_model"] = model
    if key:
        at.session_state["sidebar_server_key"] = key
    return at.run()


def finished(at, *, job_key: str = "live_job") -> bool:
    """The live job (or the one under `job_key`) has ended (the page redraws once when it does)."""
    job = at.session_state[job_key] if job_key in at.session_state else None
    return job is not None and not job.active


def test_the_live_page_streams_from_a_server_with_its_charts_and_keeps_the_run(server):
    from conftest import html_of, run_until

    from engine.store import RunStore

    at = server_app(f"{server}/happy/v1", key="sk-secret-123")
    assert not at.exception
    assert at.sidebar.selectbox(key="sidebar_server_model").options == ["<i>other</i>", "tiny-server"]
    assert not any("Loading" in getattr(p, "text", "") for p in at.get("progress"))  # the local model is not loaded
    assert any("watch **your server** answer" in m.value for m in at.markdown)  # not "on this machine"
    at.button(key="live_generate").click()
    run_until(at, lambda a: finished(a) and "✅ Done" in html_of(a), timeout_s=30, what="the server's answer")
    assert not at.exception
    page = html_of(at)
    assert "Paris" in page and "Times measured at the client" in page and "Lyon" in page
    assert len(at.get("plotly_chart")) == 3  # budget, latency, tokens over time; KV cache and memory said in words
    assert any("how big its KV cache is" in info.value for info in at.info)
    job = at.session_state["live_job"]
    assert job.trace.remote["host"] == server.removeprefix("http://") and job.saved_to.parent.name == "remote"
    assert job.local_folders  # local mode: a model named by a folder here may have its config read
    saved = job.saved_to.read_text(encoding="utf-8")
    assert "sk-secret-123" not in saved and "Bearer" not in saved  # the key is nowhere in the file
    assert [entry.path.split("/")[0] for entry in RunStore().list()[0]] == ["remote"]


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("status/401", "check the API key"),
        ("broken", "broke after 2 tokens"),
        ("malformed", "a chunk that is not JSON"),
    ],
)
def test_a_server_that_fails_is_one_sentence_on_the_live_page_and_its_tokens_are_kept(server, path, said):
    from conftest import run_until

    at = server_app(f"{server}/{path}/v1")
    at.button(key="live_generate").click()
    run_until(at, lambda a: finished(a) and len(a.error) > 0, timeout_s=30, what="the failure")
    assert not at.exception
    shown = at.error[0].value
    assert said in shown
    job = at.session_state["live_job"]
    if path == "status/401":
        assert job.trace is None and job.saved_to is None
    else:
        assert "tokens that arrived are kept on the Runs page" in shown and job.trace.finish_reason == "stopped"


def test_stop_closes_a_servers_stream_and_keeps_what_arrived(server):
    from conftest import run_until

    at = server_app(f"{server}/slow/v1")
    at.button(key="live_generate").click()
    run_until(at, lambda a: len(a.session_state["live_job"].records) == 1, timeout_s=10, what="the first token")
    at.button(key="live_stop").click()
    run_until(at, finished, timeout_s=10, what="the stop")
    job = at.session_state["live_job"]
    assert job.state == "stopped" and job.trace.finish_reason == "stopped" and job.trace.answer == "Paris"
    assert job.trace.remote["error"] == "stopped by the client" and job.saved_to.is_file()


def test_a_missing_model_name_or_a_bad_address_is_refused_before_anything_is_sent(server):
    at = server_app("ftp://example.org/v1", model="")
    at.button(key="live_generate").click().run()
    assert not at.exception and "live_job" not in at.session_state
    assert any("name the server's model" in warning.value for warning in at.warning)
    at.session_state["sidebar_server_model"] = "tiny-server"
    at.button(key="live_generate").click().run()
    assert any("is not a server address" in warning.value for warning in at.warning)


def test_a_hosted_kitchen_offers_only_its_configured_servers(server, tmp_path, monkeypatch):
    from conftest import run_until

    from app.hosting import kitchen_config

    config = tmp_path / "kitchen.toml"
    hosted = '[hosting]\nmode = "hosted"\n[models]\nallowed = ["/no/such/model"]\n'  # no real model loads
    config.write_text(hosted, encoding="utf-8")
    monkeypatch.setenv("INFERENCE_KITCHEN_CONFIG", str(config))
    kitchen_config.cache_clear()
    try:
        at = server_app("http://169.254.169.254/v1")  # a visitor's own address: not offered, never fetched
        assert not at.exception
        assert "a server" not in [option for radio in at.sidebar.radio for option in radio.options]
        assert "live_job" not in at.session_state
        config.write_text(f'{hosted}[servers]\nallowed = ["{server}/happy/v1"]\n', encoding="utf-8")
        kitchen_config.cache_clear()
        at = server_app("http://169.254.169.254/v1")
        assert at.sidebar.selectbox(key="sidebar_server_url").options == [f"{server}/happy/v1"]
        assert at.session_state["sidebar_server_url"] == f"{server}/happy/v1"  # the sent address was replaced
        at.button(key="live_generate").click()
        run_until(at, finished, timeout_s=30, what="the allowed server's answer")
        job = at.session_state["live_job"]
        assert job.state == "done" and job.local_folders is False  # a model's name never reads a folder here
    finally:
        kitchen_config.cache_clear()


# ---- a server under load (engine/experiments/server_load.py) ------------------------------------------------------


def load_result(server: str, behaviour: str, levels: str = "1,2,4", *extra: str, env: dict | None = None):
    """Run the server-load experiment from the command line against one behaviour; (process, result file)."""
    from engine.experiments import saved_results

    command = ["experiment", "server-load", "--endpoint", f"{server}/{behaviour}/v1", "--server-model", "tiny-server",
               "--concurrency", levels, "--max-new-tokens", "8", *extra]  # fmt: skip
    done = engine_cli(*command, env_extra=env)
    return done, (saved_results("server-load")[0] if done.returncode == 0 else None)


def test_a_server_that_batches_raises_the_total_with_the_streams_sent_at_once(server):
    from engine.experiments import load_result as load_experiment

    posts_before = TinyServer.posts.get("steady", 0)
    secret = {"KITCHEN_TEST_KEY": "sk-load-secret-123"}
    done, path = load_result(server, "steady", "1,2,4", "--api-key-env", "KITCHEN_TEST_KEY", env=secret)
    assert done.returncode == 0, done.stderr
    assert "sk-load-secret-123" not in path.read_text(encoding="utf-8") + done.stdout  # sent, never written
    result = load_experiment(path)  # the result contract, checked whole
    assert result.model["source"].startswith("remote: 127.0.0.1:") and result.hardware == {"device": "remote"}
    rows = {row["concurrency"]: row for row in result.rows}
    assert sorted(rows) == [1, 2, 4] and all(row["failed"] == 0 for row in rows.values())
    assert TinyServer.posts["steady"] - posts_before == 1 + 1 + 2 + 4  # one warm-up request first, not measured
    assert [rows[n]["tokens"] for n in (1, 2, 4)] == [3, 6, 12]  # every stream's 3 tokens arrived
    assert result.details["prompt_tokens"] == 9  # the server's own count, from its usage
    # Each stream takes ~0.3 s however many run (the tiny server serves them side by side), so the total rises
    # with the streams: 4 at once at least 2.5x one alone (ideal 4x; thread start-up and scheduling take some)
    assert rows[4]["tokens_per_s"] > 2.5 * rows[1]["tokens_per_s"]
    assert 90 < rows[1]["itl_p50_ms"] < 200 and 90 < rows[4]["ttft_p50_ms"] < 300  # the server's 0.1 s pauses
    assert "the server batches them" in result.finding and "3 streams" not in result.finding


def test_a_server_that_serves_one_stream_at_a_time_is_named_for_it(server):
    from engine.experiments import load_result as load_experiment

    done, path = load_result(server, "serial", "1,4")
    assert done.returncode == 0, done.stderr
    result = load_experiment(path)
    one, four = result.rows
    assert four["tokens_per_s"] < 1.2 * one["tokens_per_s"]  # queued: the total stays flat
    assert four["ttft_p90_ms"] > 2.5 * one["ttft_p50_ms"]  # and the last stream waited for three before it
    assert "did not cook the streams together" in result.finding
    assert result.details["prompt_tokens"] is None  # it sent no usage: nothing invented


def test_a_server_that_refuses_every_stream_is_one_line_and_no_result(server):
    done, path = load_result(server, "status/500")
    assert done.returncode == 2 and path is None
    assert "the warm-up request failed" in done.stderr and "failed on its side (500)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in done.stderr


def test_server_load_options_are_refused_early_in_a_sentence():
    from engine.errors import SettingsError
    from engine.experiments.server_load import ServerLoadOptions

    good = {"endpoint": "http://127.0.0.1:9/v1", "server_model": "m"}
    for bad, said in [
        ({"server_model": ""}, "name the server's model"),
        ({"endpoint": "localhost:8000"}, "is not a server address"),
        ({"concurrency": (1, 65)}, "up to 64 streams"),
        ({"concurrency": (0,)}, "positive whole numbers"),
        ({"api_key_env": "KITCHEN_NO_SUCH_VARIABLE"}, "KITCHEN_NO_SUCH_VARIABLE is not set"),
    ]:
        with pytest.raises(SettingsError, match=said):
            ServerLoadOptions(**{**good, **bad}).check()


def test_the_server_load_finding_follows_its_rows_in_each_case():
    from engine.experiments.server_load import finding

    def row(concurrency, tokens_per_s, *, failed=0, ttft=100.0, itl=50.0):
        return {"concurrency": concurrency, "tokens_per_s": tokens_per_s, "failed": failed, "ttft_p50_ms": ttft,
                "itl_p50_ms": itl}  # fmt: skip

    batched = finding([row(1, 20.0), row(8, 110.0, ttft=180.0, itl=70.0)])
    assert batched.startswith("8 streams at once got 110.0 tokens/s in all, 5.5x one stream's 20.0: the server batches")
    assert "100 ms at 1 and 180 ms at 8" in batched and "50 ms and 70 ms" in batched
    flat = finding([row(1, 20.0), row(4, 21.0, ttft=900.0)])
    assert "only 1.1x" in flat and "did not cook the streams together" in flat
    assert finding([row(2, 30.0)]) == "2 stream(s) at once got 30.0 tokens/s in all."
    assert finding([row(1, 20.0), row(2, 35.0, failed=1)]).endswith(" 1 stream failed (see the rows).")
    assert "n/a" in finding([row(1, 20.0, itl=None), row(2, 35.0, itl=None)])
    assert "2.5x 2 streams' 20.0" in finding([row(2, 20.0), row(8, 50.0)])  # a sweep that starts above one


def test_the_batching_page_draws_a_servers_sweep_beside_this_machines(server):
    from conftest import SMALL, make_tiny_model
    from streamlit.testing.v1 import AppTest

    from engine.experiments import run_experiment, save_result
    from engine.experiments.result import default_result_path

    save_result(run_experiment(make_tiny_model(context=512), "batch", SMALL["batch"]), default_result_path("batch"))
    done, _path = load_result(server, "steady", "1,4")
    assert done.returncode == 0, done.stderr
    at = AppTest.from_file("../pages/batch.py", default_timeout=60).run()
    assert not at.exception
    said = " ".join(m.value for m in at.markdown)
    assert "the server batches them" in said and "Beside this machine." in said and "With 4 at once" in said
    chart = next(c for c in at.get("plotly_chart") if "the server: all streams" in c.proto.spec)
    names = [line["name"] for line in json.loads(chart.proto.spec)["data"]]
    assert names == ["this machine: all users (tokens/s)", "the server: all streams (tokens/s)",
                     "this machine: wait per token (ms)", "the server: wait per token (ms)"]  # fmt: skip
    assert "measured at the client" in " ".join(c.value for c in at.caption)


def test_the_server_against_the_kitchen_sentence_follows_both_sweeps():
    from engine.experiments.server_load import versus_kitchen

    server = [{"concurrency": 1, "tokens_per_s": 10.0, "itl_p50_ms": 90.0},
              {"concurrency": 8, "tokens_per_s": 36.0, "itl_p50_ms": 204.0}]  # fmt: skip
    kitchen = [{"batch_size": 1, "tokens_per_s": 11.4, "itl_ms": 90.0},
               {"batch_size": 8, "tokens_per_s": 41.9, "itl_ms": 189.0}]  # fmt: skip
    assert versus_kitchen(server, kitchen) == (
        "With 8 at once, the server made 36.0 tokens/s in all (3.6x one alone) and this machine's kitchen 41.9 "
        "(3.7x one alone); each stream waited 204 ms between tokens there (timed at this client) and 189 ms here."
    )
    assert versus_kitchen(server[1:], kitchen[1:]).startswith(
        "With 8 at once, the server made 36.0 tokens/s in all and"
    )
    assert versus_kitchen(server[:1], kitchen) is None  # no level above one in common: nothing to compare


def test_a_servers_own_numbers_are_drawn_beside_its_tokens_with_its_ttft(server):
    from streamlit.testing.v1 import AppTest

    from engine.remote_run import run_remote_trace
    from engine.store import RunStore

    trace = run_remote_trace(parse_endpoint(f"{server}/with-metrics/v1"), "hi", model="m")
    save_trace(trace, default_remote_trace_path())
    plain = run_remote_trace(parse_endpoint(f"{server}/happy/v1"), "hi", model="m")
    save_trace(plain, default_remote_trace_path())
    paths = {entry.path: entry for entry in RunStore().list()[0]}
    at = AppTest.from_file("../pages/runs.py", default_timeout=30).run()
    with_metrics, without = sorted(paths)  # saved in that order: their names sort by time
    at.multiselect(key="runs_selected").set_value([with_metrics]).run()
    assert not at.exception
    chart = next(c for c in at.get("plotly_chart") if "requests running" in c.proto.spec)
    lines = {line["name"]: line for line in json.loads(chart.proto.spec)["data"]}
    samples = trace.remote["metrics"]["samples"]
    assert lines["requests running"]["y"] == [sample["values"]["running"] for sample in samples]
    assert set(lines["KV cache in use (%)"]["y"]) == {50.0}  # vLLM's 0.5, drawn as a percentage
    assert len(lines["this run's tokens arriving"]["x"]) == len(trace.events)
    clocks = at.dataframe[-1].value  # ours and the server's own TTFT, side by side
    assert list(clocks["measured by"]) == ["this client", "vLLM's /metrics histogram"]
    assert list(clocks["TTFT"]) == [fmt_ms(trace.summary.ttft_ms), fmt_ms(trace.remote["metrics"]["server_ttft_ms"])]
    at.multiselect(key="runs_selected").set_value([without]).run()
    assert not at.exception and not any("requests running" in c.proto.spec for c in at.get("plotly_chart"))
    assert any("answered 404" in c.value for c in at.caption)  # why there is nothing to draw


def test_raw_sends_a_plain_completion_and_keeps_its_alternatives(server, tmp_path):
    out = tmp_path / "raw.json"
    done = engine_cli("trace", "--endpoint", f"{server}/raw/v1", "--model", "tiny-server", "--prompt",
                      "The capital of France is", "--raw", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    trace = load_trace(out)
    assert trace.answer == " Paris is" and [e.text for e in trace.events] == [" Paris", " is"]
    assert trace.events[0].shared_chunk and trace.events[0].top[1].token == " Lyon"  # two tokens in one chunk
    assert trace.settings["chat_template"] is False and trace.prompt["chat_template_applied"] is False
    assert "as many as the server's usage counts" in trace.remote["count_check"] and trace.finish_reason == "length"
    chat = engine_cli("trace", "--endpoint", f"{server}/raw/v1", "--model", "tiny-server", "--prompt", "hi")
    assert chat.returncode == 2 and "(404)" in chat.stderr  # without --raw it went to /chat/completions


def test_a_server_name_from_a_file_is_shown_as_text_in_the_metrics_chart():
    from engine.figures import server_metrics_chart

    samples = [{"t_ms": 0.0, "values": {"running": 1.0}}]
    spec = server_metrics_chart(samples, [], server="<a href='http://x'>vLLM</a>")  # an imported trace says so
    title = spec["layout"]["yaxis"]["title"]["text"]
    assert "<a" not in title and "&lt;a href=" in title  # plotly would draw the link; escaped it reads as typed


def test_vllms_per_request_ttft_is_kept_and_shown_beside_the_other_two_with_where_the_time_went(server, tmp_path):
    from streamlit.testing.v1 import AppTest

    from engine.remote_run import run_remote_trace, ttft_story

    trace = run_remote_trace(parse_endpoint(f"{server}/vllm/v1"), "hi", model="m")
    # only the known fields, only numbers: a null, a string and an unknown name are dropped
    assert trace.remote["server_timing"] == {"time_to_first_token_ms": 30.0, "queue_time_ms": 20.0,
                                             "generation_time_ms": 300.0}  # fmt: skip
    assert Trace.from_dict(trace.to_dict()).remote["server_timing"] == trace.remote["server_timing"]
    client = trace.summary.ttft_ms
    assert client >= 300  # the tiny server waits 0.3 s before the first token
    assert ttft_story(trace) == (
        f"Of the {fmt_ms(client)} this client waited for its first token, 20.0 ms in the server's queue and 30.0 ms "
        f"from being scheduled to the first token; the other {fmt_ms(client - 50)} were the network and the HTTP "
        "server."
    )
    save_trace(trace, default_remote_trace_path())
    at = AppTest.from_file("../pages/runs.py", default_timeout=30).run()
    at.multiselect(key="runs_selected").set_value([at.multiselect(key="runs_selected").options[0]]).run()
    assert not at.exception
    clocks = at.dataframe[-1].value
    assert list(clocks["measured by"]) == ["this client", "vLLM's /metrics histogram", "vLLM's per-request metrics"]
    assert list(clocks["its clock starts when"]) == ["the request is sent", "the request arrives at the server",
                                                     "the request is scheduled"]  # fmt: skip
    assert clocks["TTFT"].iloc[2] == "30.0 ms" and "20.0 ms in the queue before it" in clocks["what lies inside"][2]
    assert any("the network and the HTTP server" in c.value for c in at.caption)
    done = engine_cli("trace", "--endpoint", f"{server}/vllm/v1", "--model", "m", "--prompt", "hi",
                      "--out", str(tmp_path / "t.json"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "TTFT by vLLM's per-request metrics" in done.stdout and "20.0 ms in the server's queue" in done.stdout


def test_where_the_first_token_went_follows_whichever_server_figures_came():
    from engine.records import Summary
    from engine.remote_run import ttft_clocks, ttft_story

    def trace_with(*, timing=None, arrival=None, client=400.0):
        summary = Summary(ttft_ms=client, itl_p50_ms=None, itl_p90_ms=None, itl_p99_ms=None, tpot_ms=None,
                          decode_tokens_per_s=None, prefill_tokens_per_s=None, total_ms=client, peak_memory_bytes=None,
                          new_tokens=1)  # fmt: skip
        metrics = {"server": "SGLang", "server_ttft_ms": arrival} if arrival is not None else None
        remote = {"host": "h", "server_timing": timing, "metrics": metrics}
        return Trace(schema_version=1, created_at="", model={}, hardware={}, versions={}, settings={}, prompt={},
                     events=(), summary=summary, finish_reason="eos", remote=remote)  # fmt: skip

    assert ttft_story(trace_with()) is None and len(ttft_clocks(trace_with())) == 1  # the server sent no TTFT
    assert ttft_story(trace_with(arrival=250.0)) == (
        "Of the 400.0 ms this client waited for its first token, 250.0 ms on the server's own clock, from arrival "
        "(its histogram's mean); the other 150.0 ms were the network and the HTTP server."
    )
    assert ttft_clocks(trace_with(arrival=250.0))[1].measured_by == "SGLang's /metrics histogram"
    assert ttft_story(trace_with(timing={"time_to_first_token_ms": 100.0})) == (
        "Of the 400.0 ms this client waited for its first token, 100.0 ms from being scheduled to the first token; "
        "the other 300.0 ms were the network, the HTTP server and the server's queue."
    )
    # the per-request split wins over the histogram's mean (it is this request's), and a split that does not fit
    # is said so rather than shown as a negative time
    both = trace_with(timing={"time_to_first_token_ms": 100.0, "queue_time_ms": 50.0}, arrival=390.0)
    assert "50.0 ms in the server's queue" in ttft_story(both) and "the other 250.0 ms" in ttft_story(both)
    assert ttft_story(trace_with(arrival=500.0)).startswith(
        "The server's figures (500.0 ms on the server's own clock, from arrival (its histogram's mean)) add up to "
        "more than the 400.0 ms this client waited"
    )


def batch_page_on(url: str, *, key: str | None = None):
    """The Batching page under AppTest with the sidebar's kitchen set to a server."""
    return server_app(url, key=key, page="../pages/batch.py")


def sweep_ended(at) -> bool:
    """The Batching page's server sweep has ended."""
    return finished(at, job_key="batch_server_job")


def test_the_batching_page_sweeps_the_sidebars_server_on_its_own_thread_and_draws_it(server):
    from conftest import run_until

    posts_before = TinyServer.posts.get("steady", 0)
    at = batch_page_on(f"{server}/steady/v1", key="sk-sweep-secret")
    assert not at.exception
    at.multiselect(key="batch_server_levels").set_value([1, 4])
    at.number_input(key="batch_server_tokens").set_value(8)
    at.button(key="batch_server_run").click()
    run_until(at, sweep_ended, timeout_s=30, what="the sweep")
    job = at.session_state["batch_server_job"]
    assert job.state == "done" and job.slot is None  # never sent to a local model's queue
    assert TinyServer.posts["steady"] - posts_before == 1 + 1 + 4  # the warm-up, then 1 and 4 at once
    assert [row["concurrency"] for row in job.result.rows] == [1, 4] and job.result.rows[1]["tokens"] == 12
    saved = job.saved_to.read_text(encoding="utf-8")
    assert "sk-sweep-secret" not in saved and 'api_key"' not in saved  # the key travelled in memory only
    said = " ".join(m.value for m in at.markdown)
    assert "the server batches them" in said and "Beside this machine" not in said  # no local sweep to compare
    chart = next(c for c in at.get("plotly_chart") if "the server: all streams" in c.proto.spec)
    assert [line["name"] for line in json.loads(chart.proto.spec)["data"]] == [
        "the server: all streams (tokens/s)",
        "the server: wait per token (ms)",
    ]
    assert any("Run the batching experiment above" in c.value for c in at.caption)


def test_stop_cuts_a_servers_sweep_short_at_once_and_a_bad_choice_is_refused_in_a_sentence(server):
    from conftest import run_until

    at = batch_page_on(f"{server}/slow/v1")  # 3 s between a stream's first and second token
    at.multiselect(key="batch_server_levels").set_value([1, 2])
    at.button(key="batch_server_run").click().run()
    job = at.session_state["batch_server_job"]
    run_until(at, lambda a: job.progress is not None and "1 stream at once" in job.progress.message, timeout_s=15,
              what="the first level")  # fmt: skip
    time.sleep(0.3)  # its stream is waiting for its second token
    pressed = time.monotonic()
    at.button(key="batch_server_stop").click()
    run_until(at, sweep_ended, timeout_s=10, what="the stop")
    assert time.monotonic() - pressed < 2.5  # the socket was shut: it did not wait out the server's 3 s pause
    assert job.state == "stopped" and job.result is None and job.saved_to is None  # nothing measured, nothing saved
    assert any("Stopped before anything was measured" in info.value for info in at.info)
    refused = batch_page_on("ftp://example.org/v1")
    assert not refused.exception and "batch_server_run" not in [b.key for b in refused.button]
    assert any("cannot be swept" in w.value and "is not a server address" in w.value for w in refused.warning)


def test_a_sweep_stopped_part_way_keeps_its_levels_and_the_servers_host(server):
    from conftest import run_until

    at = batch_page_on(f"{server}/slow/v1")
    at.multiselect(key="batch_server_levels").set_value([1, 2])
    at.button(key="batch_server_run").click().run()
    job = at.session_state["batch_server_job"]
    run_until(at, lambda a: job.progress is not None and "2 streams at once" in job.progress.message, timeout_s=20,
              what="the second level")  # fmt: skip
    at.button(key="batch_server_stop").click()
    run_until(at, sweep_ended, timeout_s=10, what="the stop")
    host = server.removeprefix("http://")
    assert job.state == "stopped" and [row["concurrency"] for row in job.result.rows] == [1]  # level 2: not a row
    assert job.result.stopped and job.result.model == {"name": "tiny-server", "source": f"remote: {host}"}
    assert job.saved_to.is_file() and any(f"on {host}" in m.value.replace("\\", "") for m in at.markdown)
