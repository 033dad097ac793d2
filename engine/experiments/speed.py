"""What makes it fast: the same prompt through every decode path, with what each costs to prepare and in quality.

For each path (engine.paths): prepare it (timed, with whether inductor's cache was warm), decode the same greedy
answer with every token recorded (the trace's summary gives decode and prefill speed), count the bytes one step
reads, and measure its quality cost against eager float32 teacher-forced over one text (engine.quality): the path
reads the reference's tokens one decode step at a time, so what is compared is the path's own compiled step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from engine.errors import SettingsError
from engine.experiments.base import Measured, Options, Progress, require_positive
from engine.experiments.llama_cpp import NAME as LLAMA_CPP
from engine.experiments.llama_cpp import llama_cpp_kv_bytes, llama_cpp_unavailable, measure_llama_cpp
from engine.experiments.roofline import measure_bandwidth
from engine.facts import DECODE_PATHS, FAITHFUL_AGREEMENT
from engine.generate import prepare_request
from engine.loading import LoadedModel
from engine.paths import DEFAULT_MAX_LEN, PathUnavailable, PreparedPath, path_unavailable, prepare_path
from engine.quality import quality_cost, teacher_forced_logits
from engine.quantize import weight_bytes_read_per_token
from engine.run import run_trace
from engine.settings import GenerationSettings

QUALITY_TEXT = Path(__file__).resolve().parents[2] / "assets" / "quality_text.txt"  # ~300 tokens of prose


@dataclass(frozen=True, kw_only=True)
class SpeedOptions(Options):
    """Which paths to run, how many tokens each decodes, and how long a text the quality check reads."""

    paths: tuple[str, ...] = field(default=DECODE_PATHS, metadata={"help": "decode paths to run, eager first"})
    prompt: str = field(default="What is the capital of France?", metadata={"help": "the prompt every path answers"})
    new_tokens: int = field(default=64, metadata={"help": "tokens each path decodes (greedy, end token ignored)"})
    quality_tokens: int = field(
        default=257, metadata={"help": "tokens of text for the quality check (that many minus one predictions)"}
    )
    bandwidth_mb: int = field(default=256, metadata={"help": "size of the tensor read to measure the ceiling (MB)"})
    llama_cpp: bool = field(
        default=True, metadata={"help": "also run llama.cpp on the same GGUF file, when llama-cpp-python is installed"}
    )

    def check(self) -> None:
        require_positive(new_tokens=self.new_tokens, bandwidth_mb=self.bandwidth_mb)
        unknown = [name for name in self.paths if name not in DECODE_PATHS]
        if unknown or not self.paths:
            raise SettingsError(f"paths must be some of {', '.join(DECODE_PATHS)}, not {list(self.paths)}")
        if self.new_tokens < 2:
            raise SettingsError("new tokens must be at least 2: decode speed needs two tokens")
        if not 2 <= self.quality_tokens < DEFAULT_MAX_LEN:
            raise SettingsError(f"quality tokens must be between 2 and {DEFAULT_MAX_LEN - 1}")


def quality_text_ids(loaded: LoadedModel, length: int) -> list[int]:
    """The text every path is judged on: plain English prose that never repeats itself, cut to `length` tokens."""
    ids = loaded.tokenizer(QUALITY_TEXT.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    if len(ids) < length:
        raise SettingsError(f"the quality text has {len(ids)} tokens for this tokenizer, fewer than {length}")
    return ids[:length]


@torch.inference_mode()
def path_logits(path: PreparedPath, token_ids: list[int]) -> torch.Tensor:
    """A path's next-token logits (T, V) at every position of a text, fed one decode step per token."""
    if path.decoder is None:
        return teacher_forced_logits(path.loaded.model, token_ids, device=path.loaded.device)
    path.decoder.reset()
    rows = []
    for position, token_id in enumerate(token_ids):
        token = torch.tensor([[token_id]], device=path.decoder.device)  # (1, 1)
        rows.append(path.step(token, torch.tensor([position], device=path.decoder.device))[0].float())  # (V,)
    path.decoder.reset()
    return torch.stack(rows)  # (T, V)


def bytes_read_per_token(path: PreparedPath, *, context: int) -> tuple[int, int]:
    """(weight bytes, KV-cache bytes) one decode step reads: a static cache is read whole, a growing one as filled."""
    weights = weight_bytes_read_per_token(path.model)
    if path.decoder is not None:
        return weights, path.decoder.allocated_bytes()
    return weights, path.loaded.facts.kv_bytes_per_token * context


def run(loaded: LoadedModel, options: SpeedOptions, progress: Progress) -> Measured:
    """Run every path on the same prompt and text; rows of speed, bytes, preparation and quality."""
    progress(0.01, "Measuring memory bandwidth (the ceiling)")
    machine = measure_bandwidth(loaded.device, size_bytes=options.bandwidth_mb * 1_000_000, repeats=5)
    bandwidth = machine["bandwidth_bytes_per_s"]
    text_ids = quality_text_ids(loaded, options.quality_tokens)
    progress(0.05, "Reading the quality text with eager float32 (the reference)")
    reference_logits = teacher_forced_logits(loaded.model, text_ids, device=loaded.device)  # (T, V)
    settings = GenerationSettings(max_new_tokens=options.new_tokens, temperature=0.0, stop_at_eos=False)
    rows, unavailable, answers, greedy_match = progress.rows, {}, {}, {}
    paths = ["eager", *[name for name in options.paths if name != "eager"]]  # eager is the yardstick
    for index, name in enumerate(paths):
        share = 0.1 + 0.9 * index / len(paths)
        reason = path_unavailable(loaded, name)
        if reason:
            unavailable[name] = reason
            continue
        progress(share, f"Preparing the {name} path (compiling takes minutes the first time)")
        try:
            path = prepare_path(loaded, name, on_progress=lambda message, share=share: progress(share, message))
        except PathUnavailable as err:
            unavailable[name] = str(err)
            continue
        progress(share + 0.3 / len(paths), f"Decoding {options.new_tokens} tokens on the {name} path")
        run_trace(loaded, options.prompt, settings=replace(settings, max_new_tokens=4), path=path)  # warm-up
        trace = run_trace(loaded, options.prompt, settings=settings, path=path)
        answers[name] = [event.token_id for event in trace.events]
        progress(share + 0.6 / len(paths), f"Checking the {name} path's quality over {len(text_ids)} tokens")
        cost = quality_cost(reference_logits, path_logits(path, text_ids), text_ids)
        context = len(trace.prompt["tokens"]) + options.new_tokens // 2  # the cache at a middle step
        weight_bytes, kv_bytes = bytes_read_per_token(path, context=context)
        summary = trace.summary
        rows.append(
            {
                "path": name,
                "dtype": path.describe()["dtype"],
                "weights": path.describe()["weights"],
                "decode_tokens_per_s": summary.decode_tokens_per_s,
                "prefill_tokens_per_s": summary.prefill_tokens_per_s,
                "itl_ms": summary.itl_p50_ms,
                "bytes_per_token": weight_bytes + kv_bytes,
                "weight_bytes_read": weight_bytes,
                "kv_bytes_read": kv_bytes,
                "ceiling_tokens_per_s": bandwidth / (weight_bytes + kv_bytes),
                "mbu": (weight_bytes + kv_bytes) * summary.decode_tokens_per_s / bandwidth,
                "prepare_s": path.prepare_s,
                "prepare_cache": path.cache,
                **cost.to_dict(),
            }
        )
        greedy_match[name] = matching_prefix(answers["eager"], answers[name])
    if options.llama_cpp:
        reason = llama_cpp_unavailable(loaded)
        if reason:
            unavailable[LLAMA_CPP] = reason
        else:
            progress(0.95, "Running llama.cpp on the same GGUF file and cores")
            row, answer = llama_cpp_row(loaded, options, text_ids, reference_logits, bandwidth=bandwidth)
            rows.append(row)
            greedy_match[LLAMA_CPP] = matching_prefix(answers["eager"], answer)
    progress(1.0, "Done")
    details = {
        **machine,
        "unavailable": unavailable,
        "greedy_match": greedy_match,  # leading greedy tokens equal to eager's, per path
        "new_tokens": options.new_tokens,
        "quality_positions": len(text_ids) - 1,
        "reference": f"eager {loaded.facts.dtype} (the model as loaded)",
        "threads": torch.get_num_threads(),
    }
    return Measured(rows=rows, details=details, finding=finding(rows, details))


def llama_cpp_row(
    loaded: LoadedModel, options: SpeedOptions, text_ids: list[int], reference_logits: torch.Tensor, *, bandwidth: float
) -> tuple[dict, list[int]]:
    """The llama.cpp row, measured like a path's, and its greedy answer."""
    settings = GenerationSettings(max_new_tokens=options.new_tokens)
    prompt_ids = list(prepare_request(loaded, options.prompt, settings=settings).token_ids)
    run = measure_llama_cpp(prompt_ids, text_ids, new_tokens=options.new_tokens, threads=torch.get_num_threads())
    kv_bytes = llama_cpp_kv_bytes(loaded, context=len(prompt_ids) + options.new_tokens // 2)
    total = run.weight_bytes + kv_bytes
    return {
        "path": LLAMA_CPP,
        "dtype": "llama.cpp's (8-bit activations)",
        "weights": run.weights,
        "decode_tokens_per_s": run.decode_tokens_per_s,
        "prefill_tokens_per_s": run.prefill_tokens_per_s,
        "itl_ms": run.itl_ms,
        "bytes_per_token": total,
        "weight_bytes_read": run.weight_bytes,
        "kv_bytes_read": kv_bytes,
        "ceiling_tokens_per_s": bandwidth / total,
        "mbu": total * run.decode_tokens_per_s / bandwidth,
        "prepare_s": run.load_s,
        "prepare_cache": "none",
        **quality_cost(reference_logits, run.text_logits, text_ids).to_dict(),
    }, run.answer


def matching_prefix(first: list[int], second: list[int]) -> int:
    """How many leading tokens two answers share."""
    count = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        count += 1
    return count


def finding(rows: list[dict], details: dict) -> str:
    """One sentence from the rows: the fastest path that keeps the answers, against eager, and its ceiling."""
    eager = next((row for row in rows if row["path"] == "eager"), None)
    if eager is None or len(rows) == 1:
        why = "; ".join(f"{name}: {reason}" for name, reason in details["unavailable"].items())
        return (
            f"Only the eager path ran ({eager['decode_tokens_per_s']:,.1f} tokens/s, "
            f"{eager['mbu']:.0%} of the bandwidth ceiling)" + (f"; {why}." if why else ".")
            if eager
            else "No path ran."
        )
    faithful = [row for row in rows if row["token_agreement"] >= FAITHFUL_AGREEMENT]
    best = max(faithful, key=lambda row: row["decode_tokens_per_s"])
    fastest = max(rows, key=lambda row: row["decode_tokens_per_s"])
    speedup = best["decode_tokens_per_s"] / eager["decode_tokens_per_s"]
    said = (
        f"The {best['path']} path decoded {best['decode_tokens_per_s']:,.1f} tokens/s, {speedup:.1f}x eager's "
        f"{eager['decode_tokens_per_s']:,.1f}, reaching {best['mbu']:.0%} of its bandwidth ceiling (eager: "
        f"{eager['mbu']:.0%}) while agreeing with eager float32 on {best['token_agreement']:.1%} of next tokens"
    )
    if best is eager:
        said = (
            f"No faster path kept the answers: eager decoded {eager['decode_tokens_per_s']:,.1f} tokens/s, and "
            f"the fastest, {fastest['path']}, agreed on only {fastest['token_agreement']:.1%} of next tokens"
        )
    elif fastest is not best:
        said += (
            f"; {fastest['path']} was faster still ({fastest['decode_tokens_per_s']:,.1f} tokens/s) but agreed on "
            f"only {fastest['token_agreement']:.1%}, under the {FAITHFUL_AGREEMENT:.0%} this page asks of a path"
        )
    return said + "."
