"""Human-readable numbers, shared by the CLI and the dashboard."""

from __future__ import annotations


def fmt_bytes(count: float | None) -> str:
    """1234567 -> '1.23 MB' (decimal units, as memory-bandwidth and price sheets use)."""
    if count is None:
        return "n/a"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.2f} {unit}"
        count /= 1000
    return ""


def fmt_ms(value: float | None) -> str:
    """A duration in ms, switching to seconds from 10 s on; 'n/a' for None."""
    if value is None:
        return "n/a"
    return f"{value / 1000:,.1f} s" if value >= 10_000 else f"{value:,.1f} ms"


def fmt_rate(value: float | None, unit: str = "tokens/s") -> str:
    """A rate with sensible precision, or 'n/a'."""
    if value is None:
        return "n/a"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def fmt_value(value: object) -> str:
    """A table or terminal cell: floats with 4 significant digits, everything else as text."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
