"""Experiments that show *why* inference behaves as it does, each a real measurement on this machine.

    from engine import load_model
    from engine.experiments import run_experiment
    result = run_experiment(load_model(), "prefill")
    print(result.finding)

Each experiment module has an `Options` dataclass and `run(loaded, options, progress) -> Measured` (rows,
details, finding); `run_experiment` adds the metadata a trace carries and returns an `ExperimentResult`, whose
file must fit the experiment's contract (engine.experiments.contracts). EXPERIMENTS below is the one list of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from engine.errors import GenerationCancelled, SettingsError
from engine.experiments.base import ExperimentProgress, Measured, Options, Progress
from engine.experiments.contracts import DETAILS as CONTRACT_DETAILS
from engine.experiments.contracts import ROWS as CONTRACT_ROWS
from engine.experiments.result import (
    ExperimentResult,
    default_result_path,
    load_result,
    results_dir,
    save_result,
    saved_results,
)
from engine.request import CancelFlag
from engine.trace import SCHEMA_VERSION, now_iso, versions

if TYPE_CHECKING:
    from engine.loading import LoadedModel


@dataclass(frozen=True)
class Experiment:
    """One experiment: its command-line name, title, module (options, run, contract fields) and dashboard page.

    This registry is the one list of experiments: the CLI's subcommands, the result contract (engine.experiments
    .result) and the dashboard's pages and navigation (app/site.py) are all derived from it. It names each
    module rather than importing it (the modules import torch): the dashboard's navigation reads the list before
    anything has imported torch, and a module is imported when its experiment is first used.
    """

    name: str
    title: str
    module_name: str  # engine.experiments.<module_name> has `run` and the Options class
    options_name: str  # its Options class
    page: tuple[str, str, str] | None = None  # (file in pages/, navigation title, icon); None: no page of its own
    remote: bool = False  # measures a server, not a loaded model (its result's model is the server's name)

    @property
    def module(self) -> ModuleType:
        """The experiment's module (imported on first use)."""
        return importlib.import_module(f"engine.experiments.{self.module_name}")

    @property
    def options_type(self) -> type[Options]:
        """The experiment's Options class."""
        return getattr(self.module, self.options_name)

    @property
    def run(self) -> Callable[..., Measured]:
        """The module's run(loaded, options, progress) -> Measured."""
        return self.module.run

    @property
    def row_fields(self) -> dict:
        """What every row must hold (an engine.contract spec; no torch needed to read it)."""
        return CONTRACT_ROWS[self.name]

    @property
    def detail_fields(self) -> dict:
        """The top-level fields the result carries besides the common ones (a spec)."""
        return CONTRACT_DETAILS[self.name]


EXPERIMENTS: dict[str, Experiment] = {
    experiment.name: experiment
    for experiment in (
        Experiment("prefill", "Prefill vs decode", "prefill", "PrefillOptions",
                   ("prefill.py", "Prefill vs decode", "📖")),
        Experiment("kv-cache", "With and without the KV cache", "kv_cache", "KvCacheOptions",
                   ("kv_cache.py", "The KV cache", "🧂")),
        Experiment("batch", "Batching: throughput vs latency", "batch", "BatchOptions",
                   ("batch.py", "Batching", "🍽️")),
        Experiment("roofline", "The memory wall: roofline and bandwidth", "roofline", "RooflineOptions",
                   ("roofline.py", "The memory wall", "🧱")),
        Experiment("speed", "What makes it fast: decode paths", "speed", "SpeedOptions",
                   ("speed.py", "What makes it fast", "⚡")),
        Experiment("train-vs-infer", "Training vs inference", "train_vs_infer", "TrainVsInferOptions",
                   ("train_vs_infer.py", "Training vs inference", "🎓")),
        Experiment("energy", "Energy per token", "energy", "EnergyOptions"),  # drawn on the Costs page
        Experiment("server-load", "A server under load: throughput vs latency", "server_load",
                   "ServerLoadOptions", remote=True),
    )
}  # fmt: skip


def get_experiment(name: str) -> Experiment:
    """The experiment called `name`; SettingsError lists the known ones otherwise."""
    if name not in EXPERIMENTS:
        raise SettingsError(f"unknown experiment {name!r}: use one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def run_experiment(
    loaded: LoadedModel | None,
    name: str,
    options: Options | None = None,
    *,
    on_progress: Callable[[ExperimentProgress], None] | None = None,
    cancel: CancelFlag | None = None,
) -> ExperimentResult:
    """Run one experiment on a loaded model (None for one that measures a server); GenerationCancelled when `cancel`
    is set between two measurements."""
    from engine.hardware import describe_hardware  # torch: imported by whoever runs one, not by the registry

    experiment = get_experiment(name)
    options = options if options is not None else experiment.options_type()
    if not isinstance(options, experiment.options_type):
        raise SettingsError(
            f"experiment {name!r} takes {experiment.options_type.__name__}, not {type(options).__name__}"
        )
    options.check()
    progress = Progress(on_progress, cancel)

    if (loaded is None) != experiment.remote:
        raise SettingsError(f"experiment {name!r} {'measures a server' if experiment.remote else 'needs a model'}")

    def result(measured: Measured) -> ExperimentResult:
        details = dict(measured.details)
        # a server's model: only what it said of itself (a stopped sweep: what it was asked for, and where)
        remote_model = details.pop("remote_model", None) or (options.remote_model() if experiment.remote else None)
        return ExperimentResult(
            schema_version=SCHEMA_VERSION,
            experiment=name,
            created_at=now_iso(),
            model=loaded.facts.to_dict() if loaded is not None else remote_model,
            hardware=describe_hardware(loaded.device) if loaded is not None else {"device": "remote"},
            versions=versions(),
            settings=options.to_dict(),
            rows=tuple(measured.rows),
            finding=measured.finding,
            details=details,
        )

    try:
        return result(experiment.run(loaded, options, progress))
    except GenerationCancelled as err:
        if not progress.rows:
            raise
        kept = len(progress.rows)
        finding = (
            f"Stopped after {kept} measured point{'s' if kept != 1 else ''}: they are kept below, but a stopped "
            "run draws no finding (its points may not cover what the finding compares)."
        )
        partial = result(Measured(rows=list(progress.rows), details={"stopped": str(err)}, finding=finding))
        raise GenerationCancelled(str(err), partial=partial) from None


__all__ = [
    "EXPERIMENTS",
    "Measured",
    "Experiment",
    "ExperimentProgress",
    "ExperimentResult",
    "Options",
    "default_result_path",
    "get_experiment",
    "load_result",
    "results_dir",
    "run_experiment",
    "save_result",
    "saved_results",
]
