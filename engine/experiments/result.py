"""An experiment's result: metadata like a trace's, one flat row per measured point, and its finding.

The JSON form is a contract other tools read: `schema_version`, `kind` ("experiment"), `experiment` (its
name), `created_at`, `model`, `hardware`, `versions`, `settings` (the options used), `rows`, `finding`, plus
experiment-specific top-level fields (`details`), e.g. roofline's `bandwidth_bytes_per_s` and `peak_flops`.
A run stopped part-way keeps the rows it had measured and says so in `stopped` (why it stopped); its finding
then draws no conclusion, and the pages that teach from results skip it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from engine.contract import ListOf, check_scalars, check_shape
from engine.errors import TraceFormatError
from engine.trace import (
    MAX_ROWS,
    NOTE_TEXT,
    REMOTE_MODEL,
    RUN_FIELDS,
    SCHEMA_VERSION,
    check_run_metadata,
    data_dir,
    read_json,
    require,
    write_json_atomic,
)

COMMON_FIELDS = (
    "schema_version",
    "kind",
    "experiment",
    "created_at",
    "model",
    "hardware",
    "versions",
    "settings",
    "rows",
    "finding",
)
SCALAR_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    """One finished experiment: who ran what where, the measured rows, extra figures, and the sentence."""

    schema_version: int
    experiment: str
    created_at: str
    model: dict
    hardware: dict
    versions: dict
    settings: dict  # the experiment's options, as run
    rows: tuple[dict, ...]  # one flat object per measured point
    finding: str  # one plain sentence computed from the rows
    details: dict = field(default_factory=dict)  # experiment-specific top-level fields

    @property
    def stopped(self) -> str | None:
        """Why the run stopped part-way (its rows are what was measured before), or None for a whole run."""
        return self.details.get("stopped")

    def to_dict(self) -> dict:
        """The result as a plain JSON-ready dict (the file format)."""
        common = {
            "schema_version": self.schema_version,
            "kind": "experiment",
            "experiment": self.experiment,
            "created_at": self.created_at,
            "model": self.model,
            "hardware": self.hardware,
            "versions": self.versions,
            "settings": self.settings,
            "rows": [dict(row) for row in self.rows],
            "finding": self.finding,
        }
        return {**common, **self.details}

    @classmethod
    def from_dict(cls, data: object) -> ExperimentResult:
        """Rebuild a result from its JSON form; TraceFormatError names the first thing that is wrong."""
        check_result_dict(data)
        return cls(
            schema_version=data["schema_version"],
            experiment=data["experiment"],
            created_at=data["created_at"],
            model=data["model"],
            hardware=data["hardware"],
            versions=data["versions"],
            settings=data["settings"],
            rows=tuple(data["rows"]),
            finding=data["finding"],
            details={key: value for key, value in data.items() if key not in COMMON_FIELDS},
        )

    def column(self, name: str, **where: object) -> list:
        """One field of every row (optionally only rows whose fields equal `where`), for charts and tables."""
        return [row[name] for row in self.rows if all(row.get(key) == value for key, value in where.items())]


def check_result_dict(data: object) -> None:
    """Check a parsed JSON value against the result contract; raise TraceFormatError naming what is wrong."""
    if not isinstance(data, dict):
        raise TraceFormatError(
            f"not an Inference Kitchen result: the file holds a JSON {type(data).__name__}, not an object"
        )
    if data.get("kind") != "experiment":
        raise TraceFormatError(f"not an experiment result: its kind is {data.get('kind', 'missing')!r}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise TraceFormatError(
            f"schema_version {data.get('schema_version')!r} is not supported (this engine reads {SCHEMA_VERSION})"
        )
    require(data, "result", {"experiment": str, "rows": list})
    from engine.experiments import EXPERIMENTS  # the registry imports this module: look it up when checking

    name = data["experiment"]
    if name not in EXPERIMENTS:
        raise TraceFormatError(f"experiment {name!r:.60} is unknown: expected one of {', '.join(EXPERIMENTS)}")
    experiment = EXPERIMENTS[name]
    run_fields = {**RUN_FIELDS, "model": REMOTE_MODEL} if experiment.remote else RUN_FIELDS  # a server's name only
    check_shape(data, {**run_fields, "finding": NOTE_TEXT, "rows": ListOf(dict, max_items=MAX_ROWS)}, "result")
    check_run_metadata(data)
    for key, value in data["settings"].items():
        for item in value if isinstance(value, list) and len(value) <= MAX_ROWS else [value]:
            check_scalars(item, f"settings.{key}")
    if "stopped" in data and not isinstance(data["stopped"], str):
        raise TraceFormatError("stopped: expected the reason the run was stopped, as text")
    if "stopped" not in data:  # a stopped run keeps its rows; figures measured at the end may be missing
        check_shape(data, experiment.detail_fields, "result")
    if not data["rows"]:
        raise TraceFormatError("rows: the result has no measured rows")
    for index, row in enumerate(data["rows"]):
        where = f"rows[{index}]"
        check_shape(row, experiment.row_fields, where)
        for key, value in row.items():
            check_scalars(value, f"{where}.{key}")


def save_result(result: ExperimentResult, path: str | os.PathLike) -> Path:
    """Write a result file atomically: a crash never leaves a half-written result."""
    return write_json_atomic(path, result.to_dict())


def load_result(path: str | os.PathLike) -> ExperimentResult:
    """Read a result file back; TraceFormatError names what is wrong with a bad file."""
    return ExperimentResult.from_dict(read_json(path))


def results_dir() -> Path:
    """Where experiment results are kept: <data dir>/experiments."""
    return data_dir() / "experiments"


def default_result_path(experiment: str) -> Path:
    """Where a result goes when no --out is given: <data dir>/experiments/<name>-<UTC time>.json."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return results_dir() / f"{experiment}-{stamp}.json"


def saved_results(experiment: str) -> list[Path]:
    """This experiment's saved result files, newest first."""
    pattern = re.compile(rf"^{re.escape(experiment)}-\d{{8}}-\d{{6}}-\d+\.json$")
    folder = results_dir()
    found = [path for path in folder.iterdir() if pattern.match(path.name)] if folder.is_dir() else []
    return sorted(found, key=lambda path: path.name, reverse=True)
