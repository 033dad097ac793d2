"""The kitchen: one continuously batched loop that cooks many visitors' requests on one model.

Scheduling, one step at a time (the README draws it):
- At every step boundary the kitchen first drops requests that were stopped or whose visitor left, then admits
  waiting requests in arrival order while the batch has room (`max_batch`, and KV memory for the longest row).
- Newcomers are prefilled together in a step of their own (left-padded to one length), then joined to the
  running batch. Prompts here are short (a chat question is ~30-40 tokens, about two decode steps of work on a
  2-core CPU), so a separate step stalls the others briefly and keeps each step's kind, and its timing, plain.
  Chunked prefill would bound that stall for very long prompts; the records show it when it happens.
- Then one decode step feeds every running request its last token: one forward pass for the whole batch, then
  each request's own sampler (temperature, top-k, top-p, seed) picks its next token. Every round that found
  requests cooking decodes once, so a stream of newcomers cannot starve them.

The batch shares one KV cache, left-padded: each row holds one request's keys and values, a mask says which
positions are real, and each row's positions count only its own tokens. A lone request runs exactly as the
single-request loop does (no mask, no padding), so its tokens and speed are unchanged. A request without the KV
cache re-reads its whole sequence every step and cannot share a batched cache: it takes solo steps in turn.

The clock wraps one step's model work (forward + sampling). Records, top-5, detokenizing and every callback run
after it stopped.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from engine.errors import GenerationCancelled
from engine.generate import (
    TOP_ALTERNATIVES,
    StreamingDetokenizer,
    alternatives,
    cache_keyword,
    generate_step,
    make_sampler,
)
from engine.hardware import device_clock_ns, memory_probe
from engine.loading import LoadedModel
from engine.records import TokenRecord
from engine.request import CancelFlag, Request
from engine.settings import DEFAULT_MAX_BATCH
from engine.steps import QueuePlace, StepInfo

RECENT_STEPS = 32  # decode steps whose median time estimates a queued request's wait


@dataclass(eq=False, kw_only=True)
class Order:
    """One request inside the kitchen, with where its records go; the kitchen fills in the rest as it cooks."""

    table: int  # an anonymous number; never the visitor's prompt
    request: Request
    cancel: CancelFlag | None = None
    on_record: Callable[[TokenRecord], None] = lambda record: None  # called after the clock stopped
    on_end: Callable[[Order, str, str | None], None] = lambda order, outcome, error: None  # done|stopped|failed
    on_queue: Callable[[QueuePlace], None] = lambda place: None
    arrived_ns: int = field(default_factory=time.perf_counter_ns)
    started_ns: int | None = None  # when its prefill step began (its records' t_ms count from here)
    made: int = 0  # tokens generated so far
    last_token: int = 0
    finished: bool = False
    sampler: Callable[[torch.Tensor], torch.Tensor] | None = None
    detokenizer: StreamingDetokenizer | None = None
    solo_steps: Iterator | None = None  # the cache-off path's own generator
    queue_place: QueuePlace | None = None

    @property
    def length(self) -> int:
        """Tokens in its sequence so far (prompt and answer)."""
        return len(self.request.token_ids) + self.made

    @property
    def remaining(self) -> int:
        """Tokens it may still make."""
        return self.request.max_new_tokens - self.made

    @property
    def queued_ms(self) -> float | None:
        """How long it waited before its prefill began."""
        return None if self.started_ns is None else (self.started_ns - self.arrived_ns) / 1e6


def estimated_waits(
    running_remaining: list[int], queued_tokens: list[int], *, slots: int, step_ms: float
) -> list[float]:
    """Each queued request's wait (s) if every step took `step_ms`: slots free as running requests finish.

    A running request with r tokens left frees its slot after r steps; the queue takes freed slots in order.
    """
    finish_steps = sorted(running_remaining)[:slots]
    heapq.heapify(finish_steps)
    free = max(0, slots - len(finish_steps))
    waits = []
    for tokens in queued_tokens:
        if free:
            free -= 1
            start = 0
        else:
            start = heapq.heappop(finish_steps)
        waits.append(start * step_ms / 1000)
        heapq.heappush(finish_steps, start + tokens)
    return waits


def changed_by_half_a_second(before: float | None, now: float | None) -> bool:
    """True when a wait estimate is worth telling again (a message per step would be noise)."""
    if before is None or now is None:
        return before is not now
    return abs(now - before) >= 0.5


def pad_left(tensor: torch.Tensor, length: int, *, dim: int) -> torch.Tensor:
    """`tensor` grown to `length` along `dim` by zeros in front."""
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class Kitchen:
    """The batched loop for one loaded model: `add` requests, call `step` until `idle`."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        kv_budget_bytes: int | None = None,
        on_step: Callable[[StepInfo], None] = lambda info: None,
    ) -> None:
        self.loaded, self.on_step = loaded, on_step
        self.max_batch, self.kv_budget_bytes = max(1, max_batch), kv_budget_bytes
        self.clock, self.memory_in_use = device_clock_ns(loaded.device), memory_probe(loaded.device)
        self.waiting: deque[Order] = deque()
        self.running: list[Order] = []  # rows of the batched cache, in order
        self.solo: list[Order] = []  # cache-off requests, one solo step each per round
        self.cache: DynamicCache | None = None  # (rows, kv heads, positions, head dim) per layer
        self.mask: torch.Tensor | None = None  # (rows, positions): 1 where a position is a real token
        self.step_index = 0
        self.recent_step_ms: deque[float] = deque(maxlen=RECENT_STEPS)
        self.admitting = True  # False while an experiment waits for the batch to drain

    # ---- the public face ----------------------------------------------------------------------------------------

    def add(self, order: Order) -> None:
        """Queue a prepared request; it joins the batch at a step boundary."""
        settings = order.request.settings
        generator = torch.Generator(device=self.loaded.device).manual_seed(settings.seed)
        order.sampler = make_sampler(
            temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p, generator=generator
        )
        order.detokenizer = StreamingDetokenizer(self.loaded.tokenizer)
        self.waiting.append(order)

    @property
    def idle(self) -> bool:
        """True when nothing is running or waiting."""
        return not (self.waiting or self.running or self.solo)

    @property
    def busy(self) -> bool:
        """True while some request is being cooked (queued ones do not count)."""
        return bool(self.running or self.solo)

    def step(self) -> None:
        """One scheduling round: retire stopped requests, prefill newcomers, then one decode step for the batch.

        Every round that has running requests decodes once, so newcomers arriving at every step (a room clicking
        one after another) cannot starve the tables already cooking: each still gets a token per round.
        """
        self.retire_cancelled()
        newcomers = self.admit() if self.admitting else []
        cooking = bool(self.running)
        if newcomers:
            self.prefill(newcomers)
        if cooking and self.running:
            self.decode()
        for order in list(self.solo):
            self.solo_step(order)
        self.tell_queue()

    def fail_all(self, error: str) -> None:
        """End every request with `error` (the model raised mid-step); the batch starts empty."""
        for order in [*self.running, *self.solo, *self.waiting]:
            self.end(order, "failed", error)
        self.running, self.solo, self.waiting = [], [], deque()
        self.cache = self.mask = None

    # ---- admission ------------------------------------------------------------------------------------------------

    def batched_bytes(self, orders: list[Order]) -> int:
        """An upper bound on the batched cache for these rows: each padded to the longest full sequence."""
        longest = max(len(order.request.token_ids) + order.request.max_new_tokens for order in orders)
        return len(orders) * longest * self.loaded.facts.kv_bytes_per_token

    def admit(self) -> list[Order]:
        """Take waiting requests in arrival order while the batch has room."""
        newcomers: list[Order] = []
        while self.waiting and len(self.running) + len(self.solo) + len(newcomers) < self.max_batch:
            order = self.waiting[0]
            if not order.request.settings.kv_cache:
                self.solo.append(self.waiting.popleft())
                continue
            rows = [*self.running, *newcomers, order]
            if self.kv_budget_bytes is not None and rows[:-1] and self.batched_bytes(rows) > self.kv_budget_bytes:
                break  # it waits for memory; a lone request is always tried
            newcomers.append(self.waiting.popleft())
        return newcomers

    # ---- the steps ------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def prefill(self, newcomers: list[Order]) -> None:
        """Read the newcomers' prompts in one left-padded forward pass, then join them to the running batch."""
        model, device = self.loaded.model, self.loaded.device
        longest = max(len(order.request.token_ids) for order in newcomers)
        ids = torch.zeros(len(newcomers), longest, dtype=torch.long, device=device)  # (N, T)
        mask = torch.zeros(len(newcomers), longest, dtype=torch.long, device=device)  # (N, T)
        for row, order in enumerate(newcomers):
            prompt = torch.tensor(order.request.token_ids, device=device)
            ids[row, longest - len(prompt) :], mask[row, longest - len(prompt) :] = prompt, 1
        padded = bool((mask == 0).any())
        extra = {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)} if padded else {}
        cache = DynamicCache(config=model.config)
        began_ns, began_s = self.clock(), time.time()
        for order in newcomers:
            order.started_ns = began_ns
        output = model(input_ids=ids, use_cache=True, logits_to_keep=1, **{cache_keyword(type(model)): cache}, **extra)
        logits = output.logits[:, -1, :]  # (N, vocab)
        tokens = self.sample(newcomers, logits)  # (N,)
        ended_ns = self.clock()
        self.join(cache, mask)
        self.running.extend(newcomers)
        step_tokens = sum(len(order.request.token_ids) for order in newcomers)
        self.record(newcomers, logits, tokens, began_ns, ended_ns, began_s, kind="prefill", step_tokens=step_tokens)

    @torch.inference_mode()
    def decode(self) -> None:
        """Feed every running request its last token in one forward pass and sample each one's next token."""
        model, device, rows = self.loaded.model, self.loaded.device, self.running
        tokens_in = torch.tensor([[order.last_token] for order in rows], device=device)  # (B, 1)
        mask = torch.cat([self.mask, self.mask.new_ones(len(rows), 1)], dim=-1)  # (B, positions + 1)
        padded = bool((mask == 0).any())
        extra = {}
        if padded:
            extra = {"attention_mask": mask, "position_ids": self.mask.sum(-1, keepdim=True)}  # (B, 1) own positions
        began_ns, began_s = self.clock(), time.time()
        output = model(input_ids=tokens_in, use_cache=True, **{cache_keyword(type(model)): self.cache}, **extra)
        logits = output.logits[:, -1, :]  # (B, vocab)
        tokens = self.sample(rows, logits)  # (B,)
        ended_ns = self.clock()
        self.mask = mask
        self.recent_step_ms.append((ended_ns - began_ns) / 1e6)
        self.record(list(rows), logits, tokens, began_ns, ended_ns, began_s, kind="decode", step_tokens=len(rows))

    def solo_step(self, order: Order) -> None:
        """One step of a cache-off request: it re-reads its whole sequence alone."""
        if order.solo_steps is None:
            prompt_ids = torch.tensor([order.request.token_ids], device=self.loaded.device)  # (1, T)
            order.solo_steps = generate_step(self.loaded.model, prompt_ids, kv_cache=False, sampler=order.sampler)
        began_ns, began_s = self.clock(), time.time()
        order.started_ns = order.started_ns or began_ns
        token, logits, _ = next(order.solo_steps)  # (1, 1), (1, vocab)
        ended_ns = self.clock()
        kind = "prefill" if order.made == 0 else "decode"
        self.record([order], logits, token.view(1), began_ns, ended_ns, began_s, kind=kind, step_tokens=order.length)

    def sample(self, orders: list[Order], logits: torch.Tensor) -> torch.Tensor:
        """Each request's next token from its row of logits (B, vocab), by its own sampler: (B,)."""
        if all(order.request.settings.temperature == 0 for order in orders):
            return logits.argmax(dim=-1)  # (B,)
        return torch.cat([order.sampler(logits[row : row + 1]).view(1) for row, order in enumerate(orders)])

    # ---- after the clock --------------------------------------------------------------------------------------------

    def record(
        self,
        orders: list[Order],
        logits: torch.Tensor,
        tokens: torch.Tensor,
        began_ns: int,
        ended_ns: int,
        began_s: float,
        *,
        kind: str,
        step_tokens: int,
    ) -> None:
        """Give each request in the step its token's record, retire the finished ones, and report the step."""
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, vocab)
        top = torch.topk(log_probs, TOP_ALTERNATIVES)
        memory, latency_ms = self.memory_in_use(), (ended_ns - began_ns) / 1e6
        held_bytes = self.cache_bytes()  # during the step, before the finished requests' rows go
        per_position = held_bytes // self.mask.numel() if held_bytes and self.mask is not None else 0
        for row, order in enumerate(orders):
            token_id = int(tokens[row])
            settings = order.request.settings
            last = order.made + 1 >= order.request.max_new_tokens or (
                settings.stop_at_eos and token_id in self.loaded.facts.eos_token_ids
            )
            text = order.detokenizer.add(token_id) + (order.detokenizer.flush() if last else "")
            record = TokenRecord(
                step=order.made,
                phase="prefill" if order.made == 0 else "decode",
                token_id=token_id,
                text=text,
                latency_ms=latency_ms,
                t_ms=(ended_ns - order.started_ns) / 1e6,
                kv_cache_bytes=per_position * order.length if order.solo_steps is None else 0,
                memory_bytes=memory,
                logprob=float(log_probs[row, token_id]),
                top=alternatives(self.loaded.tokenizer, torch.return_types.topk((top.values[row], top.indices[row]))),
                batch_size=len(orders),
                step_tokens=step_tokens,
            )
            order.made, order.last_token = order.made + 1, token_id
            order.on_record(record)
            if last:
                self.end(order, "done", None)
        self.remove([order for order in orders if order.finished])
        self.step_index += 1
        tables = tuple(order.table for order in orders)
        self.on_step(
            StepInfo(self.step_index, kind, began_s, latency_ms, tables, step_tokens, len(self.waiting), held_bytes)
        )

    def cache_bytes(self) -> int:
        """Bytes the batched cache holds now, padding included."""
        if self.cache is None:
            return 0
        return sum(t.numel() * t.element_size() for layer in self.cache.layers for t in (layer.keys, layer.values))

    def retire_cancelled(self) -> None:
        """Drop requests whose Stop was pressed or whose visitor left; their rows and KV memory go at once."""
        for group in (self.running, self.solo, list(self.waiting)):
            for order in group:
                if order.cancel is not None and order.cancel.is_set():
                    self.end(order, "stopped", f"the run was cancelled after {order.made} tokens")
        self.waiting = deque(order for order in self.waiting if not order.finished)
        self.remove([order for order in [*self.running, *self.solo] if order.finished])

    def end(self, order: Order, outcome: str, error: str | None) -> None:
        """Mark a request finished and tell its owner how it ended."""
        if not order.finished:
            order.finished = True
            order.on_end(order, outcome, error)

    # ---- the batched cache ----------------------------------------------------------------------------------------

    def join(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append the newcomers' cache rows (N, ...) to the running batch's, left-padding the shorter to one length."""
        if self.cache is None or not self.running:
            self.cache, self.mask = cache, mask
            return
        length = max(self.mask.shape[1], mask.shape[1])
        for running_layer, new_layer in zip(self.cache.layers, cache.layers, strict=True):
            if not isinstance(running_layer, DynamicLayer) or type(running_layer) is not DynamicLayer:
                raise TypeError(f"the kitchen batches plain DynamicLayer caches, not {type(running_layer).__name__}")
            running_layer.keys = torch.cat(
                [pad_left(running_layer.keys, length, dim=2), pad_left(new_layer.keys, length, dim=2)]
            )
            running_layer.values = torch.cat(
                [pad_left(running_layer.values, length, dim=2), pad_left(new_layer.values, length, dim=2)]
            )
        self.mask = torch.cat([pad_left(self.mask, length, dim=1), pad_left(mask, length, dim=1)])  # (B + N, length)

    def remove(self, leaving: list[Order]) -> None:
        """Drop finished requests: their cache rows go, and positions no remaining row uses are cut from the front."""
        if not leaving:
            return
        self.solo = [order for order in self.solo if order not in leaving]
        keep = [row for row, order in enumerate(self.running) if order not in leaving]
        if len(keep) == len(self.running):
            return
        self.running = [self.running[row] for row in keep]
        if not keep:
            self.cache = self.mask = None
            return
        index = torch.tensor(keep, device=self.loaded.device)
        mask = self.mask[index]  # (kept, positions)
        first_used = int(mask.any(dim=0).nonzero()[0])  # earlier columns are padding in every kept row
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index, :, first_used:], layer.values[index, :, first_used:]
        self.mask = mask[:, first_used:]

    # ---- the queue --------------------------------------------------------------------------------------------------

    def tell_queue(self) -> None:
        """Tell each waiting request its place and estimated wait, when either changed."""
        if not self.waiting:
            return
        step_ms = statistics.median(self.recent_step_ms) if self.recent_step_ms else None
        waits: list[float | None] = [None] * len(self.waiting)
        if step_ms is not None and self.admitting:
            remaining = [order.remaining for order in [*self.running, *self.solo]]
            queued = [order.request.max_new_tokens for order in self.waiting]
            waits = estimated_waits(remaining, queued, slots=self.max_batch, step_ms=step_ms)
        for place, (order, wait) in enumerate(zip(self.waiting, waits, strict=True), start=1):
            told = order.queue_place
            if told is None or told.place != place or changed_by_half_a_second(told.wait_s, wait):
                order.queue_place = QueuePlace(place, wait)
                order.on_queue(order.queue_place)


def serve_alone(loaded: LoadedModel, request: Request, *, cancel: CancelFlag | None = None) -> Iterator[TokenRecord]:
    """Run one request through a kitchen of its own, yielding its records (tests and benchmarks compare paths)."""
    records: list[TokenRecord] = []
    ended: list[tuple[str, str | None]] = []
    kitchen = Kitchen(loaded, max_batch=1)
    kitchen.add(
        Order(
            table=1,
            request=request,
            cancel=cancel,
            on_record=records.append,
            on_end=lambda order, outcome, error: ended.append((outcome, error)),
        )
    )
    while not kitchen.idle:
        kitchen.step()
        yield from records
        records.clear()
    if ended and ended[0][0] == "stopped":
        raise GenerationCancelled(ended[0][1] or "stopped")
