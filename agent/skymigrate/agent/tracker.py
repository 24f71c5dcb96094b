"""Live counters for one node, the heartbeat they become, and the seed's node progress report."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime

from skymigrate.core import humanize
from skymigrate.core.eta import RateEstimator
from skymigrate.core.metrics import AgentMetrics
from skymigrate.core.progress import NodeHeartbeat, NodePhase

log = logging.getLogger("skymigrate.agent")


class Tracker:
    def __init__(self, rank: int, metrics: AgentMetrics, window_s: float = 60.0) -> None:
        self.rank, self.metrics = rank, metrics
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.estimator = RateEstimator(window_s=window_s)
        self._lock = threading.Lock()
        self.objects_total = self.bytes_total = 0
        self.objects_done = self.bytes_done = 0
        self.objects_skipped = self.bytes_skipped = 0
        self.objects_failed = self.bytes_failed = 0
        self.retries = 0
        self.last_error: str | None = None
        self._in_flight: dict[str, int] = {}
        self.usage = (0, 0, 0, 0)  # ramdisk used/cap, disk used/cap

    def set_totals(self, objects: int, nbytes: int) -> None:
        with self._lock:
            self.objects_total, self.bytes_total = objects, nbytes
        self.estimator.add(time.monotonic(), 0, 0)  # copying starts now: a short run still gets a speed
        self.metrics.total_objects.set(objects)
        self.metrics.total_bytes.set(nbytes)

    def moving(self, key: str, n: int) -> None:
        with self._lock:
            self._in_flight[key] = self._in_flight.get(key, 0) + n

    def copied(self, key: str, size: int) -> None:
        with self._lock:
            self._in_flight.pop(key, None)
            self.objects_done += 1
            self.bytes_done += size
        self.metrics.finished("copied", size)

    def skipped(self, n: int, nbytes: int) -> None:
        with self._lock:
            self.objects_done += n
            self.objects_skipped += n
            self.bytes_done += nbytes
            self.bytes_skipped += nbytes
        self.metrics.finished("skipped", nbytes, n)

    def failed(self, key: str, size: int, reason: str) -> None:
        with self._lock:
            self._in_flight.pop(key, None)
            self.objects_failed += 1
            self.bytes_failed += size
            self.last_error = reason
        self.metrics.finished("failed", size)

    def retried(self, key: str, operation: str, reason: str) -> None:
        with self._lock:
            self._in_flight.pop(key, None)
            self.retries += 1
            self.last_error = reason
        self.metrics.retried(operation)

    def sample(self) -> None:
        """Feed the rate estimator: moved bytes (not skipped ones) including those in flight."""
        with self._lock:
            moved = self.bytes_done - self.bytes_skipped + sum(self._in_flight.values())
            objs = self.objects_done - self.objects_skipped
        self.estimator.add(time.monotonic(), moved, objs)

    def heartbeat(self, phase: NodePhase) -> NodeHeartbeat:
        with self._lock:
            in_flight = sum(self._in_flight.values())
            hb = NodeHeartbeat(
                rank=self.rank,
                phase=phase,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=self.started_at,
                updated_at=time.time(),
                objects_total=self.objects_total,
                objects_done=self.objects_done,
                objects_skipped=self.objects_skipped,
                objects_failed=self.objects_failed,
                bytes_total=self.bytes_total,
                bytes_done=self.bytes_done,
                bytes_skipped=self.bytes_skipped,
                bytes_in_flight=in_flight,
                bytes_failed=self.bytes_failed,
                retries=self.retries,
                last_error=self.last_error,
                ramdisk_used=self.usage[0],
                ramdisk_capacity=self.usage[1],
                disk_used=self.usage[2],
                disk_capacity=self.usage[3],
            )
        est = self.estimator
        hb.speed_bps = est.byte_rate()
        hb.object_cost = est.object_cost()
        hb.work_rate = est.work_rate(hb.object_cost)
        hb.eta_s = 0.0 if phase in ("Succeeded", "Failed") else est.eta(hb.remaining_bytes, hb.remaining_objects)
        m = self.metrics
        m.speed.set(hb.speed_bps or 0)
        m.eta.set(hb.eta_s if hb.eta_s is not None else float("nan"))
        m.remaining_bytes.set(hb.remaining_bytes)
        m.remaining_objects.set(hb.remaining_objects)
        m.ramdisk_used.set(hb.ramdisk_used)
        m.ramdisk_capacity.set(hb.ramdisk_capacity)
        m.disk_used.set(hb.disk_used)
        m.disk_capacity.set(hb.disk_capacity)
        return hb

    def elapsed(self) -> float:
        return time.monotonic() - self._t0


def report(hb: NodeHeartbeat, elapsed: float) -> str:
    """The seed's node progress report."""
    pct_obj = 100 * hb.objects_done / hb.objects_total if hb.objects_total else 100.0
    pct_size = 100 * hb.bytes_done / hb.bytes_total if hb.bytes_total else 100.0
    eta = hb.eta_s
    done_at = datetime.fromtimestamp(time.time() + eta).strftime("%Y-%m-%d %H:%M:%S") if eta is not None else "-"
    lines = [
        f"📊 Node {hb.rank} Progress Report:",
        f"   Objects: {hb.objects_done}/{hb.objects_total} ({pct_obj:.1f}%)"
        + (f", {hb.objects_failed} failed" if hb.objects_failed else ""),
        f"   Size: {humanize.size(hb.remaining_bytes)} remaining ({pct_size:.1f}% complete)",
        f"   Speed: {(hb.speed_bps or 0) / 2**20:.2f} MBps",
        f"   ETA: {humanize.duration(eta)}",
        f"   Completion: {done_at}",
        f"   Elapsed: {humanize.duration(elapsed)}",
    ]
    if hb.ramdisk_capacity:
        lines.append(
            f"   RAM disk: {100 * hb.ramdisk_used / hb.ramdisk_capacity:.0f}% used "
            f"({humanize.size(hb.ramdisk_capacity - hb.ramdisk_used)} available)"
        )
    if hb.disk_capacity:
        lines.append(
            f"   Root disk: {100 * hb.disk_used / hb.disk_capacity:.0f}% used "
            f"({humanize.size(hb.disk_capacity - hb.disk_used)} available)"
        )
    return "\n".join([*lines, "---"])
