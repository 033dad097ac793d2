"""Energy counters: a GPU's through NVML, a CPU package's through Linux RAPL, or none (then figures are estimates).

Energy of a run = change of a cumulative counter over the run (NVML nvmlDeviceGetTotalEnergyConsumption, as
vllm/benchmarks/lib/energy.py reads it; RAPL's energy_uj for the CPU package). Both count the whole device,
not one process: what else runs on it is included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

RAPL_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class EnergyCounter:
    """A cumulative energy counter: `read()` returns joules since some fixed origin."""

    name: str  # what is counted and how, shown next to every measured figure
    read: Callable[[], float]
    wraps_at_joules: float | None = None  # the counter restarts from 0 after this (RAPL)

    def joules_between(self, before: float, after: float) -> float:
        """Energy between two readings, allowing for one wrap-around."""
        if after < before and self.wraps_at_joules:
            return after + self.wraps_at_joules - before
        return after - before


def nvml_counter(device: torch.device) -> EnergyCounter | None:
    """The GPU's total-energy counter through NVML, or None without nvidia-ml-py, a driver or support."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # millijoules; raises where unsupported
    except Exception:  # noqa: BLE001 - no NVIDIA driver, no library, or an old GPU: no counter
        return None
    name = pynvml.nvmlDeviceGetName(handle)
    return EnergyCounter(
        f"measured: NVML total energy of {name}", lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000
    )


def rapl_counter(root: Path = RAPL_ROOT) -> EnergyCounter | None:
    """The CPU packages' energy through Linux RAPL (/sys/class/powercap/intel-rapl:N), or None where unreadable."""
    packages = sorted(path for path in root.glob("intel-rapl:*") if path.name.count(":") == 1)
    try:
        readable = [(path / "energy_uj", int((path / "max_energy_range_uj").read_text())) for path in packages]
        for counter, _ in readable:
            int(counter.read_text())
    except (OSError, ValueError):
        return None
    if not readable:
        return None
    wrap = sum(limit for _, limit in readable) / 1e6
    return EnergyCounter(
        f"measured: RAPL package energy of {len(readable)} CPU package(s)",
        lambda: sum(int(counter.read_text()) for counter, _ in readable) / 1e6,
        wraps_at_joules=wrap if len(readable) == 1 else None,
    )


def energy_counter(device: torch.device) -> EnergyCounter | None:
    """The best energy counter for a device: NVML on CUDA, RAPL on CPU, else None."""
    if device.type == "cuda":
        return nvml_counter(device)
    if device.type == "cpu":
        return rapl_counter()
    return None
