"""Readable numbers for logs, status and the terminal view."""

from __future__ import annotations

import math


def duration(seconds: float | None) -> str:
    """2h 15m 30s; '-' when unknown."""
    if seconds is None or math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return "-"
    s = round(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if h or d:
        parts.append(f"{h}h")
    if m or h or d:
        parts.append(f"{m}m")
    parts.append(f"{s}s")
    return " ".join(parts)


def size(n: float) -> str:
    """Decimal units (1.2 GB), as storage providers bill."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def rate(bytes_per_second: float | None) -> str:
    if bytes_per_second is None:
        return "-"
    return f"{size(bytes_per_second)}/s"
