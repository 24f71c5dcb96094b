"""How busy the host's CPUs are, from /proc/stat: the ETA's hint whether the node is bound by CPU."""

from __future__ import annotations

import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")


def _read(path: Path) -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs since boot; None where there is no /proc/stat."""
    try:
        fields = path.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


class CpuMeter:
    """Busy fraction (0..1) of every CPU of the host over the last ``min_interval_s`` or more.

    Callers may ask more often than the kernel's tick counts move (the tracker samples twice in a row
    at times): between readings the last value stands."""

    def __init__(self, path: Path = PROC_STAT, min_interval_s: float = 0.5) -> None:
        self.path, self.min_interval_s = path, min_interval_s
        self._last, self._at, self._value = _read(path), time.monotonic(), 0.0

    def busy(self) -> float:
        if time.monotonic() - self._at < self.min_interval_s:
            return self._value
        now = _read(self.path)
        last, self._last, self._at = self._last, now, time.monotonic()
        if now is not None and last is not None and now[1] > last[1]:
            self._value = (now[0] - last[0]) / (now[1] - last[1])
        return self._value
