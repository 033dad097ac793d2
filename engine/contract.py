"""The shapes a run file must have before any page reads it: a small spec language and one checker.

A spec is a Python value: `Number`, `Text`, `Flag` for one JSON value; `dict` or `list` for a container whose
contents the caller checks; a dict for an object whose keys are all
required (unless their spec is optional) and whose other keys are allowed; `ListOf` and `MapOf` for lists and
objects of one kind. Every failure is a TraceFormatError naming the place, e.g. "serving.users: expected a
whole number, got 'x'". The specs for traces and results live beside the code that writes them (engine.trace,
each experiment module); what they require is what the dashboard's pages read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import TraceFormatError

MAX_DEPTH = 16  # the deepest nesting a run file needs is 4; anything far deeper is refused before it is walked


@dataclass(frozen=True)
class Number:
    """A finite number (`whole`: an integer) within [low, high]; `optional`: may be missing or null."""

    whole: bool = False
    low: float | None = None
    high: float | None = None
    optional: bool = False


@dataclass(frozen=True)
class Text:
    """A string of at most `max_chars`."""

    max_chars: int = 100_000
    optional: bool = False


@dataclass(frozen=True)
class Flag:
    """true or false."""

    optional: bool = False


@dataclass(frozen=True)
class ListOf:
    """A list of at most `max_items`, each of one spec."""

    item: object
    max_items: int = 100_000
    optional: bool = False


@dataclass(frozen=True)
class MapOf:
    """An object with any keys (at most `max_items`), every value of one spec."""

    value: object
    max_items: int = 1_000
    optional: bool = False


INT = Number(whole=True, low=0)  # counts and byte sizes
POSITIVE_INT = Number(whole=True, low=1)
FLOAT = Number(low=0)  # times, rates, sizes
SCALAR = (str, int, float, bool, type(None))


def optional(spec: object) -> object:
    """The same spec, which may also be missing or null."""
    return type(spec)(**{**spec.__dict__, "optional": True})


def describe(value: object) -> str:
    """A value as a refusal quotes it: its type, and a short repr."""
    return f"{type(value).__name__} {value!r:.40}"


def check_shape(value: object, spec: object, where: str) -> None:
    """Raise TraceFormatError at the first place `value` does not fit `spec`."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise TraceFormatError(f"{where}: expected an object, got {describe(value)}")
        for key, inner in spec.items():
            if key not in value or value[key] is None:
                if getattr(inner, "optional", False):
                    continue
                raise TraceFormatError(f"{where}: the field {key!r} is missing")
            check_shape(value[key], inner, f"{where}.{key}")
        return
    if value is None and getattr(spec, "optional", False):
        return
    if isinstance(spec, type):  # only the kind of container; its contents are checked by the caller
        if not isinstance(value, spec) or isinstance(value, bool):
            raise TraceFormatError(
                f"{where}: expected {'an object' if spec is dict else spec.__name__}, got {describe(value)}"
            )
    elif isinstance(spec, Number):
        if isinstance(value, bool) or not isinstance(value, int if spec.whole else (int, float)):
            wanted = "a whole number" if spec.whole else "a number"
            raise TraceFormatError(f"{where}: expected {wanted}, got {describe(value)}")
        if not math.isfinite(value):
            raise TraceFormatError(f"{where}: expected a finite number, got {value!r}")
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            low = "-inf" if spec.low is None else f"{spec.low:g}"
            high = "inf" if spec.high is None else f"{spec.high:g}"
            raise TraceFormatError(f"{where}: {value!r} is outside [{low}, {high}]")
    elif isinstance(spec, Text):
        if not isinstance(value, str):
            raise TraceFormatError(f"{where}: expected text, got {describe(value)}")
        if len(value) > spec.max_chars:
            raise TraceFormatError(f"{where}: {len(value):,} characters, above the limit of {spec.max_chars:,}")
    elif isinstance(spec, Flag):
        if not isinstance(value, bool):
            raise TraceFormatError(f"{where}: expected true or false, got {describe(value)}")
    elif isinstance(spec, ListOf):
        if not isinstance(value, list):
            raise TraceFormatError(f"{where}: expected a list, got {describe(value)}")
        if len(value) > spec.max_items:
            raise TraceFormatError(f"{where}: {len(value):,} items, above the limit of {spec.max_items:,}")
        for index, item in enumerate(value):
            check_shape(item, spec.item, f"{where}[{index}]")
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            raise TraceFormatError(f"{where}: expected an object, got {describe(value)}")
        if len(value) > spec.max_items:
            raise TraceFormatError(f"{where}: {len(value):,} fields, above the limit of {spec.max_items:,}")
        for key, item in value.items():
            check_shape(item, spec.value, f"{where}.{key}")
    else:
        raise TypeError(f"not a spec: {spec!r}")


def check_scalars(value: object, where: str) -> None:
    """Refuse anything but flat text, numbers, true/false and null (a field no page reads into a structure)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise TraceFormatError(f"{where}: expected a finite number, got {value!r}")
    if not isinstance(value, SCALAR):
        raise TraceFormatError(f"{where}: expected a number, text, true/false or null, got {type(value).__name__}")


def nesting_depth_within(value: object, limit: int = MAX_DEPTH) -> bool:
    """True when lists and objects nest no deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, (dict, list)):
            if depth > limit:
                return False
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True
