"""What this machine has: devices, dtypes, a description for traces, memory probes and clock sync."""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable

import psutil
import torch

from engine.errors import SettingsError
from engine.facts import MachineFacts

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def available_devices() -> list[str]:
    """Device names usable here, best first (CUDA, then Apple MPS, then CPU)."""
    devices = []
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(1, torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device after checking it exists here, or the best one available."""
    if requested is None or requested in ("", "auto"):
        return torch.device(available_devices()[0])
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as err:
        raise SettingsError(f"unknown device {requested!r}: use one of {', '.join(available_devices())}") from err
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise SettingsError(
            f"device {requested!r} is not available on this machine (it has: {', '.join(available_devices())})"
        )
    if device.type == "mps" and "mps" not in available_devices():
        raise SettingsError(f"device 'mps' is not available on this machine (it has: {', '.join(available_devices())})")
    if device.type not in ("cuda", "mps", "cpu"):
        raise SettingsError(f"unsupported device {requested!r}: use one of {', '.join(available_devices())}")
    return device


def available_dtypes(device: torch.device) -> list[str]:
    """Weight dtypes that make sense on this device, the default first."""
    if device.type == "cuda":
        return ["bfloat16", "float16", "float32"] if torch.cuda.is_bf16_supported() else ["float16", "float32"]
    if device.type == "mps":
        return ["float16", "float32", "bfloat16"]
    return ["float32", "bfloat16"]


def pick_dtype(requested: str | None, device: torch.device) -> torch.dtype:
    """The requested dtype after checking its name, or bfloat16 on a capable CUDA card and float32 elsewhere."""
    if requested is None or requested in ("", "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    name = DTYPE_ALIASES.get(requested, requested)
    if name not in DTYPES:
        raise SettingsError(f"unknown dtype {requested!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32 and so on."""
    return str(dtype).removeprefix("torch.")


def cpu_name() -> str:
    """The CPU's model name as the OS reports it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_hardware(device: torch.device | None = None) -> dict:
    """A JSON-ready description of this machine and the device in use, stored in every trace."""
    device = device or pick_device()
    info = {
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "torch_threads": torch.get_num_threads(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_total_bytes=props.total_memory, cuda_version=torch.version.cuda)
    elif device.type == "mps":
        info.update(gpu="Apple GPU (MPS)")
    return info


def machine_facts() -> MachineFacts:
    """Every device with its dtypes (default first) and description: what the dashboard's sidebar offers."""
    devices = available_devices()
    dtypes = {}
    for name in devices:
        default = dtype_name(pick_dtype(None, torch.device(name)))
        dtypes[name] = (default, *(other for other in available_dtypes(torch.device(name)) if other != default))
    return MachineFacts(
        devices=tuple(devices),
        dtypes=dtypes,
        hardware={name: describe_hardware(torch.device(name)) for name in devices},
    )


def memory_probe(device: torch.device) -> Callable[[], int]:
    """A function returning memory in use now: allocated device memory on CUDA/MPS, process RSS on CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.memory_allocated(device)
    if device.type == "mps":
        return torch.mps.current_allocated_memory
    return process_rss_probe()


@functools.cache  # one open file for the whole process, however many runs
def process_rss_probe() -> Callable[[], int]:
    """Resident set size of this process: 1 µs via /proc/self/statm on Linux (psutil takes ~100 µs) or psutil."""
    try:
        statm = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        process = psutil.Process()
        return lambda: process.memory_info().rss
    page_bytes = os.sysconf("SC_PAGE_SIZE")
    return lambda: int(os.pread(statm, 128, 0).split()[1]) * page_bytes


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work, to be called before every clock read."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def device_clock_ns(device: torch.device) -> Callable[[], int]:
    """A clock for timing device work: waits for the device's queued work (CUDA/MPS), then reads perf_counter_ns."""
    sync = synchronizer(device)

    def now_ns() -> int:
        sync()
        return time.perf_counter_ns()

    return now_ns


def timed_ms(device: torch.device, work: Callable[[], object]) -> tuple[float, object]:
    """Run `work` once between two synchronized clock reads; return (milliseconds, its result)."""
    clock = device_clock_ns(device)
    began = clock()
    result = work()
    return (clock() - began) / 1e6, result
