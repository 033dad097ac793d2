"""The run layer: collect one request's records into a Trace (step -> stream -> run)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.errors import GenerationCancelled
from engine.generate import prepare_request, stream_generate
from engine.hardware import describe_hardware
from engine.loading import LoadedModel
from engine.paths import PreparedPath
from engine.records import TokenRecord, summarize
from engine.request import CancelFlag, Request
from engine.settings import GenerationSettings
from engine.trace import SCHEMA_VERSION, Trace, now_iso, versions


def finish_reason(request: Request, records: list[TokenRecord], eos_token_ids: tuple[int, ...]) -> str:
    """Why a run ended: 'eos' (the model said it was done), 'length' (max_new_tokens) or 'context' (window full)."""
    if request.settings.stop_at_eos and records[-1].token_id in eos_token_ids:
        return "eos"
    return "length" if len(records) >= request.settings.max_new_tokens else "context"


def build_trace(
    loaded: LoadedModel,
    request: Request,
    records: list[TokenRecord],
    *,
    peak_memory_bytes: int | None = None,
    queued_ms: float | None = None,
    stopped: bool = False,
    path: dict | None = None,
) -> Trace:
    """Assemble a Trace from a request's records and the model/machine metadata (`stopped`: cancelled part-way)."""
    return Trace(
        schema_version=SCHEMA_VERSION,
        created_at=now_iso(),
        model=loaded.facts.to_dict(),
        hardware=describe_hardware(loaded.device),
        versions=versions(),
        settings=request.settings.to_dict(),
        prompt={
            "text": request.text,
            "rendered": request.rendered,
            "tokens": list(request.token_ids),
            "chat_template_applied": request.chat_template_applied,
        },
        events=tuple(records),
        summary=summarize(records, prompt_tokens=len(request.token_ids), peak_memory_bytes=peak_memory_bytes),
        finish_reason="stopped" if stopped else finish_reason(request, records, loaded.facts.eos_token_ids),
        queued_ms=queued_ms,
        path=path,
    )


def run_trace(
    loaded: LoadedModel,
    prompt: str,
    *,
    settings: GenerationSettings | None = None,
    cancel: CancelFlag | None = None,
    on_record: Callable[[TokenRecord], None] | None = None,
    path: PreparedPath | None = None,
) -> Trace:
    """Run one prompt to the end and return its Trace; `on_record` sees each record as it is made."""
    request = prepare_request(loaded, prompt, settings=settings or GenerationSettings())
    return collect_trace(loaded, request, cancel=cancel, on_record=on_record, path=path)


def collect_trace(
    loaded: LoadedModel,
    request: Request,
    *,
    cancel: CancelFlag | None = None,
    on_record: Callable[[TokenRecord], None] | None = None,
    path: PreparedPath | None = None,
) -> Trace:
    """Run a prepared request, collecting its records into a Trace (GenerationCancelled keeps the partial records)."""
    on_cuda = loaded.device.type == "cuda"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(loaded.device)
    records: list[TokenRecord] = []
    try:
        for record in stream_generate(loaded, request, cancel=cancel, path=path):
            records.append(record)
            if on_record is not None:
                on_record(record)
    except GenerationCancelled as err:
        raise GenerationCancelled(str(err), records=tuple(records)) from None
    peak = torch.cuda.max_memory_allocated(loaded.device) if on_cuda else None
    described = path.describe() if path is not None else None
    return build_trace(loaded, request, records, peak_memory_bytes=peak, path=described)
