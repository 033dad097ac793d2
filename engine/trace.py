"""A trace = metadata + per-token records + summary; saved as JSON whole or not at all, loaded back with checks."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from engine.contract import (
    FLOAT,
    INT,
    MAX_DEPTH,
    POSITIVE_INT,
    Flag,
    ListOf,
    MapOf,
    Number,
    Text,
    check_scalars,
    check_shape,
    nesting_depth_within,
    optional,
)
from engine.errors import TraceFormatError
from engine.records import Alternative, Summary, TokenRecord, summarize

SCHEMA_VERSION = 1
MAX_TRACE_FILE_BYTES = 64 * 1024 * 1024  # a larger file is refused before parsing
FINISH_REASONS = ("eos", "length", "context", "stopped")


def versions() -> dict:
    """Versions of the software that produced a result (stored in every trace and result)."""
    import torch
    import transformers

    from engine import __version__

    return {
        "engine": __version__,
        "torch": str(torch.__version__),  # a TorchVersion (a str subclass) would need torch to unpickle
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def now_iso() -> str:
    """The current UTC time as an ISO 8601 string."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class Trace:
    """One recorded request: who ran what where, every token's record, and the headline summary."""

    schema_version: int
    created_at: str
    model: dict  # name, source, parameters, dtype, device, weight_bytes, kv_bytes_per_token, layers, ...
    hardware: dict  # CPU model/cores or GPU name, total memory
    versions: dict  # engine, torch, transformers, python
    settings: dict  # every generation option used
    prompt: dict  # text (typed), rendered (what the model read), tokens (their ids), chat_template_applied
    events: tuple[TokenRecord, ...]
    summary: Summary
    finish_reason: str  # "eos", "length" (max_new_tokens), "context" (the window filled up) or "stopped" (cancelled)
    queued_ms: float | None = None  # time it waited in the kitchen's queue before its prefill began (None: not served)
    path: dict | None = None  # the decode path when not plain eager: name, dtype, weights, prepare_s, cache, options
    remote: dict | None = None  # a run on a remote server: its host, what it reported, how the stream ended

    @property
    def answer(self) -> str:
        """The generated text, joined from the records."""
        return "".join(record.text for record in self.events)

    @property
    def kitchen(self) -> str:
        """Where it was cooked, in words: "this machine's model" or "the server <host>"."""
        return f"the server {self.remote.get('host', '?')}" if self.remote is not None else "this machine's model"

    def to_dict(self) -> dict:
        """The trace as a plain JSON-ready dict (the file format)."""
        return {
            "schema_version": self.schema_version,
            "kind": "trace",
            "created_at": self.created_at,
            "model": self.model,
            "hardware": self.hardware,
            "versions": self.versions,
            "settings": self.settings,
            "prompt": self.prompt,
            "finish_reason": self.finish_reason,
            "summary": self.summary.to_dict(),
            "events": [record.to_dict() for record in self.events],
            **({"queued_ms": self.queued_ms} if self.queued_ms is not None else {}),
            **({"path": self.path} if self.path is not None else {}),
            **({"remote": self.remote} if self.remote is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: object) -> Trace:
        """Rebuild a trace from its JSON form; TraceFormatError names the first thing that is wrong."""
        events, summary = check_trace_dict(data), summary_of(data)
        return cls(
            schema_version=data["schema_version"],
            created_at=data["created_at"],
            model=data["model"],
            hardware=data["hardware"],
            versions=data["versions"],
            settings=data["settings"],
            prompt=data["prompt"],
            events=events,
            summary=summary,
            finish_reason=data["finish_reason"],
            queued_ms=data.get("queued_ms"),
            path=data.get("path"),
            remote=data.get("remote"),
        )


def path_sentence(path: dict) -> str:
    """A trace's decode path in words: name, arithmetic, weights, and how long preparing it took."""
    said = f"{path['name']} ({path['dtype']} arithmetic, weights {path.get('weights') or 'as loaded'})"
    if path["cache"] != "none":
        said += f", prepared in {path['prepare_s']:.1f} s ({path['cache']} compile cache)"
    return said


def events_of(data: dict) -> tuple[TokenRecord, ...]:
    """The token records of a trace dict whose structure has been checked."""
    return tuple(
        TokenRecord(**{**event, "top": tuple(Alternative(**alt) for alt in event["top"])}) for event in data["events"]
    )


def summary_of(data: dict) -> Summary:
    """The summary a trace dict carries (as written, not recomputed)."""
    return Summary(**{name: data["summary"].get(name) for name in SUMMARY_FIELDS})


# ---- validation: every check names the place that is wrong -------------------------------------------------

RECORD_TYPES = {
    "step": int,
    "phase": str,
    "token_id": int,
    "text": str,
    "latency_ms": float,
    "t_ms": float,
    "kv_cache_bytes": int,
    "memory_bytes": int,
    "logprob": float,
    "top": list,
}
OPTIONAL_RECORD_TYPES = {
    "batch_size": int,
    "step_tokens": int,
    "shared_chunk": bool,
}  # added with the batched kitchen and remote runs; older traces lack them
COUNTED_RECORD_FIELDS = ("batch_size", "step_tokens")  # at least 1 when present
NOT_KNOWN_REMOTELY = ("token_id", "kv_cache_bytes", "memory_bytes", "logprob")  # null in a remote trace's events
SUMMARY_FIELDS = tuple(field.name for field in fields(Summary))
SUMMARY_TOLERANCE_MS = 0.01  # JSON keeps times to the microsecond; a recomputed figure may differ by rounding
MODEL = {  # what the pages read of the model that ran (charts use layers; the event count is bounded by the context)
    "name": Text(max_chars=200),
    "parameters": INT,
    "dtype": Text(max_chars=40),
    "device": Text(max_chars=40),
    "weight_bytes": INT,
    "kv_bytes_per_token": INT,
    "layers": POSITIVE_INT,
    "context_length": POSITIVE_INT,
    "source": optional(Text(max_chars=1_000)),
    "kv_heads": POSITIVE_INT,
    "head_dim": POSITIVE_INT,
    "eos_token_ids": optional(ListOf(INT, max_items=64)),
}
HARDWARE = {
    "device": optional(Text(max_chars=40)),
    "cpu": optional(Text(max_chars=300)),
    "gpu": optional(Text(max_chars=300)),
    "cpu_cores_logical": optional(POSITIVE_INT),
    "cpu_cores_physical": optional(POSITIVE_INT),
    "torch_threads": optional(POSITIVE_INT),
    "memory_total_bytes": optional(INT),
    "gpu_memory_total_bytes": optional(INT),
    "platform": optional(Text(max_chars=300)),
    "cuda_version": optional(Text(max_chars=40)),
}
RUN_FIELDS = {  # what a trace and a result both carry
    "created_at": Text(max_chars=40),
    "model": MODEL,
    "hardware": HARDWARE,
    "versions": MapOf(optional(Text(max_chars=200)), max_items=50),
    "settings": dict,
}
TRACE_SETTINGS = {
    "max_new_tokens": optional(POSITIVE_INT),
    "temperature": optional(FLOAT),
    "top_k": optional(INT),
    "top_p": optional(Number(low=0, high=1)),
    "seed": optional(Number(whole=True)),
    "kv_cache": optional(Flag()),
    "chat_template": optional(Flag()),
    "stop_at_eos": optional(Flag()),
}
PROMPT = {
    "text": Text(max_chars=200_000),
    "tokens": ListOf(INT, max_items=1_000_000),
    "rendered": optional(Text(max_chars=400_000)),
    "chat_template_applied": optional(Flag()),
}
DECODE_PATH = {  # engine.paths.PreparedPath.describe()
    "name": Text(max_chars=40),
    "dtype": Text(max_chars=40),
    "weights": optional(Text(max_chars=40)),
    "prepare_s": Number(low=0),
    "cache": Text(max_chars=10),
    "max_len": optional(POSITIVE_INT),
    "options": optional(MapOf(object, max_items=20)),  # shown as data, never read as code
}
REMOTE_MODEL = {  # what a remote trace knows of the model: the name the server reported, and where it ran
    "name": Text(max_chars=200),
    "source": optional(Text(max_chars=1_000)),
    # and, when its config.json is on this machine (engine.served_config), the architecture from it
    "config_source": optional(Text(max_chars=100)),
    "architecture": optional(Text(max_chars=100)),
    "layers": optional(POSITIVE_INT),
    "kv_heads": optional(POSITIVE_INT),
    "head_dim": optional(POSITIVE_INT),
    "config_dtype": optional(Text(max_chars=40)),
    "config_context_length": optional(POSITIVE_INT),
    "kv_bytes_per_token_estimate": optional(POSITIVE_INT),
}
REMOTE = {  # engine.remote_run: the server, what it said, and how the stream ended
    "host": Text(max_chars=300),
    "server_model": optional(Text(max_chars=300)),
    "clock": Text(max_chars=200),
    "usage": optional(MapOf(optional(Number(whole=True, low=0)), max_items=20)),
    "complete": Flag(),
    "error": optional(Text(max_chars=1_000)),
    "count_check": optional(Text(max_chars=500)),
    "shared_chunks": Number(whole=True, low=0),
    "logprobs": Flag(),
    "server_timing": optional(MapOf(Number(low=0), max_items=10)),  # vLLM's per-request metrics, when sent
}
REMOTE_METRICS = {  # remote.metrics (engine.server_metrics.metrics_section): the server's /metrics during the run
    "url": Text(max_chars=1_000),
    "server": optional(Text(max_chars=40)),
    "note": optional(Text(max_chars=500)),
    "server_ttft_ms": optional(Number(low=0)),
    "samples": ListOf({"t_ms": Number(), "values": MapOf(Number(), max_items=20)}, max_items=100_000),
}
EVENT_RANGES = {  # beyond the types: what a measured token can be (the nullable ones: remote traces)
    "token_id": optional(INT),
    "text": Text(max_chars=1_000),
    "logprob": optional(Number(high=0)),  # a log-probability: at most log(1) = 0
    "top": ListOf({"token": Text(max_chars=1_000), "prob": Number(low=0, high=1)}, max_items=50),
}
NOTE_TEXT = Text(max_chars=20_000)
MAX_ROWS = 100_000


def check_run_metadata(data: dict) -> None:
    """Refuse model, hardware and settings fields that are not flat values (beyond the ones the specs name)."""
    for section in ("model", "hardware", "settings"):
        for key, value in data[section].items():
            if key == "eos_token_ids" or (section == "settings" and isinstance(value, list)):
                continue
            check_scalars(value, f"{section}.{key}")


def type_ok(value: object, expected: type) -> bool:
    """True when a JSON value fits the expected Python type (ints count as floats; bools count as neither)."""
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, expected)


def require(data: dict, where: str, spec: dict[str, type]) -> None:
    """Raise TraceFormatError at the first field of `spec` missing from `data` or of the wrong type."""
    for name, expected in spec.items():
        if name not in data:
            raise TraceFormatError(f"{where}: the field {name!r} is missing")
        if not type_ok(data[name], expected):
            raise TraceFormatError(
                f"{where}.{name}: expected {expected.__name__}, got {type(data[name]).__name__} {data[name]!r:.40}"
            )


def check_trace_dict(data: object) -> tuple[TokenRecord, ...]:
    """Check a parsed JSON value against the trace contract; raise TraceFormatError naming what is wrong.

    Returns the token records it built to check the summary against (so a load builds them once).
    """
    if not isinstance(data, dict):
        raise TraceFormatError(
            f"not an Inference Kitchen trace: the file holds a JSON {type(data).__name__}, not an object"
        )
    if "schema_version" not in data or "events" not in data:
        raise TraceFormatError("not an Inference Kitchen trace: it has no 'schema_version' or no 'events'")
    if data.get("kind", "trace") != "trace":
        raise TraceFormatError(f"this file is a {data.get('kind')!r} result, not a trace")
    if data["schema_version"] != SCHEMA_VERSION:
        raise TraceFormatError(
            f"schema_version {data['schema_version']!r} is not supported (this engine reads {SCHEMA_VERSION})"
        )
    require(
        data,
        "trace",
        {
            "created_at": str,
            "model": dict,
            "hardware": dict,
            "versions": dict,
            "settings": dict,
            "prompt": dict,
            "summary": dict,
            "events": list,
            "finish_reason": str,
        },
    )
    if data.get("queued_ms") is not None:
        require(data, "trace", {"queued_ms": float})
        if data["queued_ms"] < 0:
            raise TraceFormatError("trace.queued_ms: a wait cannot be negative")
    remote = data.get("remote") is not None
    model_spec = REMOTE_MODEL if remote else MODEL
    check_shape(data, {**RUN_FIELDS, "model": model_spec, "settings": TRACE_SETTINGS, "prompt": PROMPT}, "trace")
    if data.get("path") is not None:
        check_shape(data["path"], DECODE_PATH, "trace.path")
    if remote:
        check_shape(data["remote"], REMOTE, "trace.remote")
        if data["remote"].get("metrics") is not None:
            check_shape(data["remote"]["metrics"], REMOTE_METRICS, "trace.remote.metrics")
    check_run_metadata(data)
    context = data["model"].get("context_length") or MAX_ROWS
    if len(data["events"]) > context:
        raise TraceFormatError(
            f"events: {len(data['events']):,} token records, more than the model's context of {context:,} tokens"
        )
    if data["finish_reason"] not in FINISH_REASONS:
        raise TraceFormatError(f"finish_reason: expected one of {FINISH_REASONS}, got {data['finish_reason']!r}")
    if not data["events"]:
        raise TraceFormatError("events: the trace has no token records")
    for index, event in enumerate(data["events"]):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            raise TraceFormatError(f"{where}: expected an object, got {type(event).__name__}")
        unknown = [name for name in NOT_KNOWN_REMOTELY if remote and name in event and event[name] is None]
        require(event, where, {name: kind for name, kind in RECORD_TYPES.items() if name not in unknown})
        require(
            event, where, {name: kind for name, kind in OPTIONAL_RECORD_TYPES.items() if event.get(name) is not None}
        )
        if any(event.get(name) is not None and event[name] < 1 for name in COUNTED_RECORD_FIELDS):
            raise TraceFormatError(f"{where}: batch_size and step_tokens count at least 1")
        extra = set(event) - set(RECORD_TYPES) - set(OPTIONAL_RECORD_TYPES)
        if extra:
            raise TraceFormatError(f"{where}: unknown field(s) {sorted(extra)}")
        check_shape(event, EVENT_RANGES, where)
        if event["step"] != index:
            raise TraceFormatError(f"{where}.step: expected {index}, got {event['step']}")
        if event["phase"] != ("prefill" if index == 0 else "decode"):
            raise TraceFormatError(
                f"{where}.phase: expected {'prefill' if index == 0 else 'decode'!r}, got {event['phase']!r}"
            )
        measured = [event[name] for name in ("latency_ms", "t_ms", "kv_cache_bytes", "memory_bytes")]
        if any(value is not None and value < 0 for value in measured):
            raise TraceFormatError(f"{where}: times and byte counts cannot be negative")
        if index and event["t_ms"] < data["events"][index - 1]["t_ms"]:
            raise TraceFormatError(
                f"{where}.t_ms: time runs backwards ({event['t_ms']} after {data['events'][index - 1]['t_ms']})"
            )
        for rank, alt in enumerate(event["top"]):
            if not isinstance(alt, dict):
                raise TraceFormatError(f"{where}.top[{rank}]: expected an object with 'token' and 'prob'")
            require(alt, f"{where}.top[{rank}]", {"token": str, "prob": float})
            if set(alt) != {"token", "prob"}:
                raise TraceFormatError(f"{where}.top[{rank}]: expected exactly 'token' and 'prob'")
    summary = data["summary"]
    for name in SUMMARY_FIELDS:
        if name not in summary:
            raise TraceFormatError(f"summary: the field {name!r} is missing")
        if summary[name] is not None and not type_ok(summary[name], float):
            raise TraceFormatError(f"summary.{name}: expected a number or null, got {summary[name]!r:.40}")
    events = events_of(data)
    check_summary_matches_events(data, events)
    return events


def check_summary_matches_events(data: dict, events: tuple[TokenRecord, ...]) -> None:
    """Refuse a trace whose summary is not what its own events give (an edited or foreign file would mislead).

    Seen: an imported file claimed a 1.0 ms TTFT while its events replayed a 343 ms one. Every figure is
    recomputed from the events; the peak memory may be above the events' own (a peak measured between them).
    """
    written = summary_of(data)
    recomputed = summarize(
        events, prompt_tokens=len(data["prompt"]["tokens"]), peak_memory_bytes=written.peak_memory_bytes
    )
    for name in SUMMARY_FIELDS:
        claimed, actual = getattr(written, name), getattr(recomputed, name)
        if name == "peak_memory_bytes":
            actual = max((event.memory_bytes for event in events if event.memory_bytes is not None), default=None)
            if claimed is not None and actual is not None and claimed < actual:
                raise TraceFormatError(
                    f"summary.peak_memory_bytes says {claimed:,} but its events reach {actual:,}: the summary does "
                    "not come from these events"
                )
            continue
        if (claimed is None) != (actual is None) or (
            claimed is not None and abs(claimed - actual) > SUMMARY_TOLERANCE_MS + 1e-3 * abs(actual)
        ):
            raise TraceFormatError(
                f"summary.{name} says {claimed!r:.12} but the events give {actual!r:.12}: the summary does not come "
                "from these events (recorded files are not edited by hand)"
            )


# ---- files: written whole or not at all -----------------------------------------------------------------------


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text to a temporary file beside `path`, fsync it, then rename it over `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data: dict) -> Path:
    """Write JSON whole or not at all (see write_text_atomic)."""
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=1, allow_nan=False))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may read as a formula (OWASP)


def spreadsheet_safe(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula, prefixed with ' so it stays text; others as they are."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def trace_csv(trace: Trace) -> str:
    """The per-token table of a trace as CSV: one row per record, the top-5 joined into one cell; text cells
    that start like a formula (a token "=SUM(…)" or "-") get a leading ' so a spreadsheet shows, not runs, them."""
    import pandas as pd

    rows = [{**r.to_dict(), "top": " | ".join(f"{a.token!r} {a.prob:.4f}" for a in r.top)} for r in trace.events]
    rows = [{key: spreadsheet_safe(value) for key, value in row.items()} for row in rows]
    return pd.DataFrame(rows).to_csv(index=False)


def trace_json(trace: Trace) -> str:
    """A trace in its file format, as text (what a download or an export holds)."""
    return json.dumps(trace.to_dict(), ensure_ascii=False, indent=1)


def read_json(path: str | os.PathLike, *, max_bytes: int | None = None) -> object:
    """Parse a JSON file after checking its size (default MAX_TRACE_FILE_BYTES); TraceFormatError says what is wrong."""
    path = Path(path)
    max_bytes = MAX_TRACE_FILE_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TraceFormatError(f"{path.name} is {size:,} bytes, above the limit of {max_bytes:,}")
        return parse_json(path.read_bytes(), name=path.name)
    except OSError as err:
        raise TraceFormatError(f"cannot read {path}: {err.strerror or err}") from err


def parse_json(raw: bytes, *, name: str = "the file") -> object:
    """Parse JSON bytes; TraceFormatError with the line and column where it breaks."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
    except RecursionError:
        raise TraceFormatError(f"{name} nests lists or objects thousands deep; no run file does") from None
    except UnicodeDecodeError as err:
        raise TraceFormatError(f"{name} is not UTF-8 text (byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise TraceFormatError(
            f"{name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); is it truncated?"
        ) from err
    if not nesting_depth_within(data):
        raise TraceFormatError(f"{name} nests lists or objects more than {MAX_DEPTH} deep; a run file needs 4")
    return data


def refuse_constant(name: str) -> None:
    """JSON has no NaN or Infinity (Python writes them, other tools refuse them): neither has a measured figure."""
    raise TraceFormatError(f"the file holds {name}, which is not a JSON number (a figure must be finite)")


def save_trace(trace: Trace, path: str | os.PathLike) -> Path:
    """Write a trace file atomically: a crash never leaves a half-written trace."""
    return write_json_atomic(path, trace.to_dict())


def load_trace(path: str | os.PathLike) -> Trace:
    """Read a trace file back into a Trace; TraceFormatError names what is wrong with a bad file."""
    return Trace.from_dict(read_json(path))


def data_dir() -> Path:
    """The per-user folder for saved runs ($INFERENCE_KITCHEN_DATA, else ~/.local/share/inference-kitchen)."""
    root = os.environ.get("INFERENCE_KITCHEN_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "inference-kitchen"
    )
    return Path(root)


def default_trace_path() -> Path:
    """Where a trace goes when no --out is given: <data dir>/traces/trace-<UTC time>.json."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return data_dir() / "traces" / f"trace-{stamp}.json"


def default_remote_trace_path() -> Path:
    """Where a remote run's trace goes when no --out is given: <data dir>/remote/trace-<UTC time>.json.

    A folder of its own in the run store: the Runs page lists it, while the lessons that quote "your run" (which
    read traces/) never take a server's times for this machine's.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return data_dir() / "remote" / f"trace-{stamp}.json"


def saved_trace_paths(*, remote: bool = False) -> list[Path]:
    """Traces recorded by this installation (`remote`: its runs on servers), newest first; imported ones left out."""
    folder = data_dir() / ("remote" if remote else "traces")
    return sorted(folder.glob("trace-*.json"), reverse=True) if folder.is_dir() else []


def latest_trace() -> Trace | None:
    """The newest readable trace recorded here (unreadable files are skipped), or None."""
    for path in saved_trace_paths():
        try:
            return load_trace(path)
        except TraceFormatError:
            continue
    return None


def lesson_misfits(trace: Trace, *, hardware: dict) -> list[str]:
    """Why a trace is not a fair "your run" to teach from (empty when it fits): the lesson assumes a greedy run with
    the KV cache on, in the device's default dtype, on this machine, with at least two tokens."""
    import torch

    from engine.hardware import dtype_name, pick_dtype

    reasons = []
    if not trace.settings.get("kv_cache", True):
        reasons.append("the KV cache was off")
    if trace.settings.get("temperature", 0):
        reasons.append(f"it sampled at temperature {trace.settings['temperature']:g}")
    device = trace.model.get("device", "cpu")
    default_dtype = dtype_name(pick_dtype(None, torch.device(device))) if device.split(":")[0] == "cpu" else None
    if default_dtype is not None and trace.model.get("dtype") != default_dtype:
        reasons.append(f"it ran in {trace.model.get('dtype')}, not the default {default_dtype}")
    gpu = trace.hardware.get("gpu")
    if trace.hardware.get("cpu") != hardware.get("cpu") or (gpu is not None and gpu != hardware.get("gpu")):
        reasons.append(f"it was measured on another machine ({trace.hardware.get('gpu') or trace.hardware.get('cpu')})")
    if trace.summary.new_tokens < 2:
        reasons.append("it made one token, so it has no decode speed")
    return reasons


def lesson_trace(*, hardware: dict) -> tuple[Trace | None, Path | None]:
    """The newest saved trace that fits the lessons (see lesson_misfits), and its file; (None, None) if none does."""
    for path in saved_trace_paths():
        try:
            trace = load_trace(path)
        except TraceFormatError:
            continue
        if not lesson_misfits(trace, hardware=hardware):
            return trace, path
    return None, None
