"""What every experiment's measuring shares: prompts of an exact length, peak memory, freeing memory between points.

Options, progress and the measured result live in engine.experiments.base (torch-free, for the dashboard).
"""

from __future__ import annotations

import threading

import torch

from engine.hardware import memory_probe, synchronizer
from engine.loading import LoadedModel

# A passage of plain English to cut prompts of an exact token count from (repeated when a longer one is needed).
FILLER_TEXT = (
    "A restaurant kitchen runs on two rhythms. When an order arrives, the cook reads the whole ticket at once "
    "and sets out everything it needs; then each dish is cooked one after another, and every plate waits for "
    "the one before it. A good prep station keeps chopped onions, sauces and stock within reach, so nothing is "
    "prepared twice. On a busy night the chef cooks for several tables at the same time, because the stove is "
    "already hot and the pans are already out. "
)


def prompt_ids(loaded: LoadedModel, length: int, *, batch: int = 1) -> torch.Tensor:
    """Token ids (batch, length) of plain English text, cut to exactly `length` tokens."""
    tokenizer = loaded.tokenizer
    ids = tokenizer(FILLER_TEXT, add_special_tokens=False)["input_ids"]
    ids = (ids * (length // len(ids) + 1))[:length]
    return torch.tensor([ids] * batch, device=loaded.device)  # (batch, length)


def max_prompt_tokens(loaded: LoadedModel, *, new_tokens: int) -> int:
    """The longest prompt that still leaves room for `new_tokens` in the context window."""
    return loaded.facts.context_length - new_tokens - 1


class PeakMemory:
    """Peak memory while the block runs: allocated device memory on CUDA, the process's resident peak on CPU.

    On Linux the resident high-water mark (VmHWM) is reset by writing 5 to /proc/self/clear_refs, so the peak
    is exact. Where that is refused, a thread samples the resident size every millisecond (`method` says which).
    """

    SAMPLE_SECONDS = 0.001

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.before_bytes = 0  # in use when the block began
        self.peak_bytes = 0
        self.method = ""
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        synchronizer(self.device)()
        self.before_bytes = memory_probe(self.device)()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated (tensors on the GPU)"
        elif reset_resident_peak():
            self.method = "the process's resident peak (Linux VmHWM, reset before the block)"
        else:
            probe, self.peak_bytes = memory_probe(self.device), self.before_bytes
            self.method = "the process's resident size, sampled every millisecond"

            def sample() -> None:
                while not self._stop.wait(self.SAMPLE_SECONDS):
                    self.peak_bytes = max(self.peak_bytes, probe())

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronizer(self.device)()
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak_bytes = max(self.peak_bytes, memory_probe(self.device)())
        else:
            self.peak_bytes = resident_peak_bytes()


def reset_resident_peak() -> bool:
    """Reset this process's resident high-water mark (Linux); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return resident_peak_bytes() > 0
    except OSError:
        return False


def resident_peak_bytes() -> int:
    """This process's resident high-water mark since the last reset (VmHWM), in bytes; 0 when unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def release_free_memory(device: torch.device) -> None:
    """Hand freed memory back (garbage, the CUDA cache, glibc's free lists) so a peak measured next starts clean."""
    import ctypes
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: freed memory may stay counted in the resident size
