"""Speed and ETA math: pure functions over progress samples, unit-tested on synthetic timelines.

Node ETA = remaining work / recent work rate, where work = bytes + k * objects. The constant k (bytes
worth of time one object costs: requests, process hand-offs, verification) is fitted by least squares
over the recent window when the mix of object sizes varies enough, so a shard of many small files is
not predicted like one of few large files. The rate is measured over a sliding window, not the
lifetime average, so the ETA follows a change of speed within about a window.

Cluster ETA = the slowest node's ETA: shards are static, so the cluster finishes when its last node
does. (The seed's formula, remaining objects / (sum of speeds * nodes), mixes units and counts nodes
twice.)
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_OBJECT_COST_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds, monotonic
    bytes: float  # cumulative bytes moved (verified plus in flight)
    objects: float  # cumulative objects finished


MIN_SPAN_S = 3.0


class RateEstimator:
    """Windowed throughput with a fitted per-object cost."""

    def __init__(self, window_s: float = 60.0, object_cost_bytes: float = DEFAULT_OBJECT_COST_BYTES) -> None:
        self.window_s = window_s
        self.prior_cost = object_cost_bytes
        self._samples: deque[Sample] = deque()

    def add(self, t: float, bytes_done: float, objects_done: float) -> None:
        if self._samples and t <= self._samples[-1].t:
            return
        self._samples.append(Sample(t, bytes_done, objects_done))
        # Keep one sample at or before the window start so the window is always fully spanned.
        while len(self._samples) > 2 and self._samples[1].t <= t - self.window_s:
            self._samples.popleft()

    @property
    def samples(self) -> list[Sample]:
        return list(self._samples)

    def object_cost(self) -> float:
        """Bytes-equivalent cost of one object, fitted over the window (prior when under-determined)."""
        return fit_object_cost(self._samples, self.prior_cost)

    def byte_rate(self) -> float | None:
        """Bytes per second over the window."""
        if len(self._samples) < 2:
            return None
        a, b = self._samples[0], self._samples[-1]
        return (b.bytes - a.bytes) / (b.t - a.t)

    def work_rate(self, cost: float | None = None) -> float | None:
        if len(self._samples) < 2:
            return None
        k = self.object_cost() if cost is None else cost
        a, b = self._samples[0], self._samples[-1]
        work = (b.bytes - a.bytes) + k * (b.objects - a.objects)
        return work / (b.t - a.t) if work > 0 else None

    def span(self) -> float:
        return self._samples[-1].t - self._samples[0].t if len(self._samples) > 1 else 0.0

    def eta(self, remaining_bytes: float, remaining_objects: float) -> float | None:
        if remaining_bytes <= 0 and remaining_objects <= 0:
            return 0.0
        # The first second of a run is all start-up bursts (a large object's first parts, empty pipes):
        # no estimate beats a wild one.
        if self.span() < min(MIN_SPAN_S, self.window_s):
            return None
        k = self.object_cost()
        rate = self.work_rate(k)
        if not rate:
            return None
        return (max(remaining_bytes, 0.0) + k * max(remaining_objects, 0.0)) / rate


FIT_INTERVALS = 12
MIN_FIT_OBJECTS = 20
MIN_OBJECT_COST, MAX_OBJECT_COST = 1024.0, 256.0 * 2**20


def fit_object_cost(samples: Iterable[Sample], prior: float) -> float:
    """Least squares on intervals: dt = db/B + dn*c  ->  k = c*B (bytes per object).

    Samples count finished objects, so a large object lands in one interval although its time was spent
    over several; short intervals make that noise large next to the signal and bias k upwards. The
    window is therefore cut into about ``FIT_INTERVALS`` intervals of equal length first.
    Falls back to ``prior`` unless the intervals disagree enough in bytes-per-object to separate
    the two costs, and the fitted coefficients are both positive.
    """
    s = _coarsen(list(samples), FIT_INTERVALS)
    rows = [(b.bytes - a.bytes, b.objects - a.objects, b.t - a.t) for a, b in itertools.pairwise(s)]
    rows = [r for r in rows if r[2] > 0 and (r[0] > 0 or r[1] > 0)]
    # A handful of finished objects (a run's large first files) cannot separate the two costs.
    if len(rows) < 4 or sum(r[1] for r in rows) < MIN_FIT_OBJECTS:
        return prior
    sxx = sum(x * x for x, _, _ in rows)
    syy = sum(y * y for _, y, _ in rows)
    sxy = sum(x * y for x, y, _ in rows)
    sxt = sum(x * t for x, _, t in rows)
    syt = sum(y * t for _, y, t in rows)
    det = sxx * syy - sxy * sxy
    # Near-collinear intervals (the same mix every time) cannot tell bytes from objects apart.
    if sxx == 0 or syy == 0 or det <= 1e-6 * sxx * syy:
        return prior
    inv_b = (sxt * syy - syt * sxy) / det
    per_obj = (syt * sxx - sxt * sxy) / det
    if inv_b <= 0 or per_obj <= 0:
        return prior
    # Far from the prior the fit is chasing noise, not a real cost (real clouds: 20-50 ms an object).
    return min(max(per_obj / inv_b, MIN_OBJECT_COST), MAX_OBJECT_COST)


def _coarsen(s: list[Sample], intervals: int) -> list[Sample]:
    """Every sample at least span/intervals after the one kept before it (always the first and the last)."""
    if len(s) <= intervals + 1:
        return s
    step = (s[-1].t - s[0].t) / intervals
    out = [s[0]]
    for x in s[1:-1]:
        if x.t - out[-1].t >= step:
            out.append(x)
    if s[-1].t - out[-1].t < step / 2 and len(out) > 1:
        out.pop()  # fold a short tail into the last interval
    out.append(s[-1])
    return out


def naive_eta(elapsed_s: float, bytes_done: float, total_bytes: float) -> float | None:
    """The seed's method: lifetime average bytes/s. Kept as the baseline the benchmarks compare with."""
    if elapsed_s <= 0 or bytes_done <= 0:
        return None
    return (total_bytes - bytes_done) / (bytes_done / elapsed_s)


@dataclass(frozen=True, slots=True)
class NodeEta:
    rank: int
    eta_s: float | None
    remaining_bytes: float
    remaining_objects: float
    work_rate: float | None
    object_cost: float = DEFAULT_OBJECT_COST_BYTES


def cluster_eta(nodes: Iterable[NodeEta]) -> float | None:
    """The slowest node decides. A node without a rate yet (not started, just restarted) is
    estimated at the mean rate of the nodes that have one; with none known, the ETA is unknown."""
    ns = list(nodes)
    if not ns:
        return None
    rates = [n.work_rate for n in ns if n.work_rate]
    mean_rate = sum(rates) / len(rates) if rates else None
    worst = 0.0
    for n in ns:
        if n.remaining_bytes <= 0 and n.remaining_objects <= 0:
            continue
        eta = n.eta_s
        if eta is None:
            if not mean_rate:
                return None
            eta = (n.remaining_bytes + n.object_cost * n.remaining_objects) / mean_rate
        worst = max(worst, eta)
    return worst if math.isfinite(worst) else None
