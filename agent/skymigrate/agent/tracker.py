"""Live counters for one node, the heartbeat they become, and the seed's node progress report."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass
from datetime import datetime

from skymigrate.agent.hostcpu import CpuMeter
from skymigrate.core import humanize
from skymigrate.core.eta import LaneEta, LaneProgress
from skymigrate.core.manifest import ObjectEntry
from skymigrate.core.metrics import AgentMetrics
from skymigrate.core.progress import NodeHeartbeat, NodePhase

log = logging.getLogger("skymigrate.agent")


@dataclass
class _Counts:
    """One lane's counters (the node's are the sums)."""

    objects_total: int = 0
    bytes_total: int = 0
    objects_done: int = 0  # verified: copied or skipped
    bytes_done: int = 0
    objects_skipped: int = 0
    bytes_skipped: int = 0
    objects_failed: int = 0
    bytes_failed: int = 0

    def __add__(self, o: _Counts) -> _Counts:
        return _Counts(*(a + b for a, b in zip(astuple(self), astuple(o), strict=True)))

    def progress(self, in_flight: int) -> LaneProgress:
        return LaneProgress(
            bytes_moved=self.bytes_done - self.bytes_skipped + in_flight,
            objects_done=self.objects_done - self.objects_skipped,
            bytes_left=max(self.bytes_total - self.bytes_done - self.bytes_failed - in_flight, 0),
            objects_left=max(self.objects_total - self.objects_done - self.objects_failed, 0),
        )


class Tracker:
    """Counters per lane: large objects (one copy slot each, started first) and small ones, because they
    run side by side at different speeds and the ETA needs each lane's own (core.eta.LaneEta).

    ``shared_slots`` answers, at every sample, whether small objects run on the ``slots`` large ones free
    (in-process copies, s5cmd batches) or on slots of their own (worker processes): a question, not a
    value, because the agent starts its workers after the tracker exists and falls back to shared slots
    if they die."""

    def __init__(
        self,
        rank: int,
        metrics: AgentMetrics,
        window_s: float = 60.0,
        slots: int = 1,
        shared_slots: Callable[[], bool] = lambda: True,
    ) -> None:
        self.rank, self.metrics = rank, metrics
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.estimator = LaneEta(window_s=window_s, slots=slots)
        self._shared_slots = shared_slots
        self._lock = threading.Lock()
        self._small, self._large = _Counts(), _Counts()
        self._large_keys: frozenset[str] = frozenset()
        self._planned = False
        self.retries = 0
        self.last_error: str | None = None
        self._in_flight: dict[str, int] = {}
        self.usage = (0, 0, 0, 0)  # ramdisk used/cap, disk used/cap
        self._cpu = CpuMeter()

    def _lane(self, key: str) -> _Counts:
        return self._large if key in self._large_keys else self._small

    def set_totals(self, entries: Iterable[ObjectEntry], large_over: int) -> None:
        """The shard, split into the lanes the agent copies it in (objects over ``large_over`` bytes are large)."""
        large: set[str] = set()
        with self._lock:
            for e in entries:
                lane = self._small
                if e.size > large_over:
                    large.add(e.key)
                    lane = self._large
                lane.objects_total += 1
                lane.bytes_total += e.size
            self._large_keys = frozenset(large)
            self._planned = True
        node = self._small + self._large
        self.metrics.total_objects.set(node.objects_total)
        self.metrics.total_bytes.set(node.bytes_total)

    def moving(self, key: str, n: int) -> None:
        with self._lock:
            self._in_flight[key] = self._in_flight.get(key, 0) + n

    def copied(self, key: str, size: int) -> None:
        with self._lock:
            self._in_flight.pop(key, None)
            lane = self._lane(key)
            lane.objects_done += 1
            lane.bytes_done += size
        self.metrics.finished("copied", size)

    def skipped(self, entries: Iterable[ObjectEntry]) -> None:
        """What is already in the target; copying starts right after."""
        n = nbytes = 0
        with self._lock:
            for e in entries:
                lane = self._lane(e.key)
                lane.objects_done += 1
                lane.objects_skipped += 1
                lane.bytes_done += e.size
                lane.bytes_skipped += e.size
                n, nbytes = n + 1, nbytes + e.size
        self.metrics.finished("skipped", nbytes, n)
        self.sample()  # the rate's starting point: a short run still gets a speed

    def failed(self, key: str, size: int, reason: str) -> None:
        with self._lock:
            self._in_flight.pop(key, None)
            lane = self._lane(key)
            lane.objects_failed += 1
            lane.bytes_failed += size
            self.last_error = reason
        self.metrics.finished("failed", size)

    def retried(self, key: str, operation: str, reason: str) -> None:
        with self._lock:
            self._in_flight.pop(key, None)
            self.retries += 1
            self.last_error = reason
        self.metrics.retried(operation)

    def sample(self) -> None:
        """Feed the estimator each lane's moved bytes (not skipped ones), in flight included."""
        with self._lock:
            large_in_flight = sum(n for k, n in self._in_flight.items() if k in self._large_keys)
            small_in_flight = sum(self._in_flight.values()) - large_in_flight
            large, small = self._large.progress(large_in_flight), self._small.progress(small_in_flight)
        self.estimator.shared = self._shared_slots()
        self.estimator.cpu_busy = self._cpu.busy()
        self.estimator.add(time.monotonic(), large, small)

    def heartbeat(self, phase: NodePhase) -> NodeHeartbeat:
        with self._lock:
            in_flight = sum(self._in_flight.values())
            c = self._small + self._large
            hb = NodeHeartbeat(
                rank=self.rank,
                phase=phase,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=self.started_at,
                updated_at=time.time(),
                objects_total=c.objects_total,
                objects_done=c.objects_done,
                objects_skipped=c.objects_skipped,
                objects_failed=c.objects_failed,
                bytes_total=c.bytes_total,
                bytes_done=c.bytes_done,
                bytes_skipped=c.bytes_skipped,
                bytes_in_flight=in_flight,
                bytes_failed=c.bytes_failed,
                retries=self.retries,
                last_error=self.last_error,
                ramdisk_used=self.usage[0],
                ramdisk_capacity=self.usage[1],
                disk_used=self.usage[2],
                disk_capacity=self.usage[3],
            )
        node = self.estimator.total
        hb.speed_bps = node.byte_rate()
        hb.object_cost = node.object_cost()
        hb.work_rate = node.work_rate(hb.object_cost)
        if phase in ("Succeeded", "Failed"):
            hb.eta_s = 0.0
        else:  # before the shard is loaded nothing is known: unknown, not "done"
            hb.eta_s = self.estimator.eta() if self._planned else None
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
    # Rounded like the readable ETA (strftime would cut the fraction off).
    done_at = datetime.fromtimestamp(round(time.time() + eta)).strftime("%Y-%m-%d %H:%M:%S") if eta is not None else "-"
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
