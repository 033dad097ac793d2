"""The run store: every saved trace and experiment result, listed fast, labelled, deleted, imported.

Runs live as one JSON file each under the data folder (traces/, experiments/ and remote/, where the engine
already writes them). `index.json` beside them caches each file's listing (kind, when, model, headline numbers) keyed
by name, size and modification time, so listing does not parse every file again; it is only a cache and is
rebuilt from the files when missing or stale. Labels live in `labels.json`; who owns a run and whether it is
shared with every visitor (a hosted kitchen's spaces) in `access.json`. All are written atomically, and labels and
access are changed under a file lock (many visitors' sessions label at once); a file that does not parse is
reported and skipped, one deleted while listing is skipped, never fatal.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import TraceFormatError
from engine.experiments.result import ExperimentResult, check_result_dict, default_result_path
from engine.trace import (
    MAX_TRACE_FILE_BYTES,
    Trace,
    check_trace_dict,
    data_dir,
    default_remote_trace_path,
    default_trace_path,
    parse_json,
    read_json,
    write_json_atomic,
)

FOLDERS = ("traces", "experiments", "remote")  # remote: runs on a server (engine.remote_run)
INDEX_VERSION = 1
REFERENCE_DIR = Path(__file__).resolve().parent.parent / "assets" / "traces"  # shipped traces, read-only
REFERENCE = "reference"  # their prefix in a run's relative path
LOCK_FILE = ".store.lock"
MARKS = ("label", "owner", "shared")  # a run's marks kept beside it (labels.json, access.json), not in the index


def is_imported(relative: str) -> bool:
    """True for a run file the importer saved (named imported-*.json: never "the latest run measured here")."""
    return relative.split("/")[-1].startswith("imported-")


@dataclass(frozen=True, kw_only=True)
class RunEntry:
    """One run as listed: where it is, what it is, and its headline numbers."""

    path: str  # relative to the store root, e.g. "traces/trace-20261126-101500-123456.json"
    kind: str  # "trace" or "experiment"
    name: str  # "trace" or the experiment's name
    created_at: str
    model: str
    device: str
    dtype: str
    hardware: str
    prompt_start: str  # a trace's prompt, cut short; an experiment's finding, cut short
    headline: dict  # a few numbers: tokens, TTFT, ITL p50, decode tokens/s, total ms (traces)
    size: int
    mtime_ns: int
    label: str = ""
    owner: str = ""  # the visitor who made or imported it ("" : the host, e.g. local mode or the command line)
    shared: bool = False  # shown to every visitor of a hosted kitchen

    @property
    def imported(self) -> bool:
        """True for a file brought in through the importer (never taken as measured on this machine)."""
        return is_imported(self.path)

    def visible_to(self, visitor: str) -> bool:
        """Whether a hosted kitchen's visitor sees this run: their own, or shared (references are shared)."""
        return self.shared or (bool(visitor) and self.owner == visitor)


def entry_for(relative: str, data: dict, *, size: int, mtime_ns: int) -> RunEntry:
    """The listing of one parsed, checked run file."""
    model, hardware = data["model"], data["hardware"]
    remote = hardware.get("device") == "remote"  # a server's run or experiment: its host is in the model's source
    common = {
        "path": relative,
        "created_at": data["created_at"],
        "model": str(model.get("name")),
        "device": f"server {str(model.get('source', '')).removeprefix('remote: ')}"
        if remote
        else str(model.get("device")),
        "dtype": "not known (a server)" if remote else str(model.get("dtype")),
        "hardware": "remote" if remote else str(hardware.get("gpu") or hardware.get("cpu") or "?"),
        "size": size,
        "mtime_ns": mtime_ns,
    }
    if data.get("kind", "trace") == "trace":
        summary = data["summary"]
        return RunEntry(
            kind="trace",
            name="trace",
            prompt_start=data["prompt"]["text"][:80],
            **common,
            headline={
                "tokens": summary["new_tokens"],
                "ttft_ms": summary["ttft_ms"],
                "itl_p50_ms": summary["itl_p50_ms"],
                "decode_tokens_per_s": summary["decode_tokens_per_s"],
                "total_ms": summary["total_ms"],
            },
        )
    return RunEntry(
        kind="experiment",
        name=data["experiment"],
        prompt_start=data["finding"][:80],
        headline={"rows": len(data["rows"])},
        **common,
    )


def check_run_dict(data: object) -> None:
    """Check a parsed JSON value as a trace or an experiment result; TraceFormatError names what is wrong."""
    if isinstance(data, dict) and data.get("kind") == "experiment":
        check_result_dict(data)
    else:
        check_trace_dict(data)


def load_run(path: str | os.PathLike) -> Trace | ExperimentResult:
    """Read one run file the pages and reports can draw: a local Trace or an ExperimentResult."""
    data = read_json(path)
    if isinstance(data, dict) and data.get("kind") == "experiment":
        return ExperimentResult.from_dict(data)
    return Trace.from_dict(data)


class RunStore:
    """The runs under one data folder (default: the engine's data folder, $INFERENCE_KITCHEN_DATA)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else data_dir()
        self.index_path, self.labels_path = self.root / "index.json", self.root / "labels.json"
        self.access_path = self.root / "access.json"

    def _read_small(self, path: Path) -> dict:
        try:
            data = read_json(path)
            return data if isinstance(data, dict) else {}
        except TraceFormatError:
            return {}  # a damaged cache or label file is rebuilt, never fatal

    def labels(self) -> dict[str, str]:
        """Each labelled run's label, by relative path."""
        return {key: value for key, value in self._read_small(self.labels_path).items() if isinstance(value, str)}

    def access(self) -> dict[str, dict]:
        """Each run's owner and sharing ({"owner": str, "shared": bool}), by relative path (unlisted: the host's)."""
        return {
            key: {"owner": str(value.get("owner", "")), "shared": value.get("shared") is True}
            for key, value in self._read_small(self.access_path).items()
            if isinstance(value, dict)
        }

    def list(self) -> tuple[list[RunEntry], list[str]]:
        """Every readable run, newest first, and one sentence per file that could not be read."""
        cached = self._read_small(self.index_path)
        cached = cached.get("entries", {}) if cached.get("version") == INDEX_VERSION else {}
        labels, access = self.labels(), self.access()
        entries, problems, fresh = [], [], {}
        for folder in FOLDERS:
            directory = self.root / folder
            for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
                relative = f"{folder}/{path.name}"
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted by another visitor while this one lists

                known = cached.get(relative)
                if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
                    entry = RunEntry(**known)
                else:
                    try:
                        data = read_json(path)
                        check_run_dict(data)
                        entry = entry_for(relative, data, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
                    except TraceFormatError as err:
                        if path.exists():  # not one deleted meanwhile
                            problems.append(f"{relative}: {err}")
                        continue
                fresh[relative] = {key: value for key, value in asdict(entry).items() if key not in MARKS}
                marks = {"label": labels.get(relative, ""), **access.get(relative, {})}
                entries.append(RunEntry(**{**asdict(entry), **marks}))
        if fresh != cached:
            try:
                write_json_atomic(self.index_path, {"version": INDEX_VERSION, "entries": fresh})
            except OSError:
                pass  # a read-only store still lists
        entries.sort(key=lambda entry: (entry.created_at, entry.path), reverse=True)
        return entries, problems

    def path_of(self, relative: str) -> Path:
        """The file of a run (a shipped reference trace too), refusing anything outside the store's folders."""
        folder, _, name = relative.partition("/")
        if folder not in (*FOLDERS, REFERENCE) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise TraceFormatError(f"{relative!r} is not a run in this store")
        return (REFERENCE_DIR if folder == REFERENCE else self.root / folder) / name

    def references(self) -> list[RunEntry]:
        """The reference traces shipped in assets/traces (read-only: they cannot be labelled or deleted)."""
        entries = []
        for path in sorted(REFERENCE_DIR.glob("*.json")):
            try:
                data = read_json(path)
                check_run_dict(data)
            except TraceFormatError:
                continue
            stat = path.stat()
            entry = entry_for(f"{REFERENCE}/{path.name}", data, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
            label = f"reference: {data.get('reference_note', path.stem)}"[:120]
            entries.append(RunEntry(**{**asdict(entry), "label": label, "shared": True}))
        return entries

    def _writable(self, relative: str) -> Path:
        path = self.path_of(relative)
        if relative.startswith(f"{REFERENCE}/"):
            raise TraceFormatError(
                "reference traces ship with Inference Kitchen and cannot be changed; import a copy to label it"
            )
        return path

    def open(self, relative: str) -> Trace | ExperimentResult:
        """Load one listed run."""
        return load_run(self.path_of(relative))

    @contextmanager
    def _one_writer(self) -> Iterator[None]:
        """Hold the store's lock (threads and processes alike): a read-modify-write of labels.json under it loses
        no other writer's change."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def set_label(self, relative: str, label: str) -> None:
        """Give a run a label (an empty label removes it)."""
        self._writable(relative)
        with self._one_writer():
            labels = self.labels()
            if label.strip():
                labels[relative] = label.strip()[:120]
            else:
                labels.pop(relative, None)
            write_json_atomic(self.labels_path, labels)

    def set_owner(self, relative: str, owner: str) -> None:
        """Record which visitor made or imported a run (hosted mode's spaces)."""
        self._change_access(relative, owner=owner)

    def set_shared(self, relative: str, shared: bool) -> None:
        """Show a run to every visitor of a hosted kitchen, or stop showing it."""
        self._change_access(relative, shared=shared)

    def _change_access(self, relative: str, **change: object) -> None:
        self._writable(relative)
        with self._one_writer():
            access = self.access()
            access[relative] = {**access.get(relative, {"owner": "", "shared": False}), **change}
            write_json_atomic(self.access_path, access)

    def delete(self, relative: str) -> None:
        """Delete a run's file, its label and its access marks."""
        self._writable(relative).unlink(missing_ok=True)
        with self._one_writer():
            for path, marks in ((self.labels_path, self.labels()), (self.access_path, self.access())):
                if marks.pop(relative, None) is not None:
                    write_json_atomic(path, marks)

    def owned_imports(self, owner: str) -> int:
        """How many imported runs a visitor owns (their import quota counts these)."""
        return sum(1 for relative, marks in self.access().items() if marks["owner"] == owner and is_imported(relative))

    def bytes_used(self) -> int:
        """The size of every run file in the store (a hosted kitchen's data-folder quota counts these)."""
        total = 0
        for folder in FOLDERS:
            for path in (self.root / folder).glob("*.json") if (self.root / folder).is_dir() else []:
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    continue
        return total

    def import_bytes(self, raw: bytes, *, filename: str, owner: str = "") -> str:
        """Check an uploaded file completely, then save it as a new run of `owner`; returns its relative path.

        Nothing is written unless the whole file is a valid trace or result (size, UTF-8, JSON, contract).
        """
        if len(raw) > MAX_TRACE_FILE_BYTES:
            raise TraceFormatError(f"{filename} is {len(raw):,} bytes, above the limit of {MAX_TRACE_FILE_BYTES:,}")
        data = parse_json(raw, name=filename)
        check_run_dict(data)
        if data.get("kind") == "experiment":
            target = default_result_path(data["experiment"])
        elif data.get("remote") is not None:
            target = default_remote_trace_path()
        else:
            target = default_trace_path()
        target = self.root / target.parent.name / f"imported-{target.name}"  # see is_imported
        write_json_atomic(target, data)
        relative = f"{target.parent.name}/{target.name}"
        self.set_label(relative, f"imported from {Path(filename).name}"[:120])
        if owner:
            self.set_owner(relative, owner)
        return relative
