"""Speed and ETA math: pure functions over progress samples, unit-tested on synthetic timelines.

Node ETA = remaining work / recent work rate, where work = bytes + k * objects. The constant k (bytes
worth of time one object costs: requests, process hand-offs, verification) is fitted by least squares
over the recent window when the mix of object sizes varies enough, so a shard of many small files is
not predicted like one of few large files. The rate is measured over a sliding window, not the
lifetime average, so the ETA follows a change of speed within about a window.

A node runs two lanes at once (``LaneEta``): large objects, one copy slot each and started first, and
small ones on the remaining slots. Each lane gets its own rate, because one blended rate is wrong as
soon as the mix left differs from the mix done (a shard whose huge files are done and whose thousands
of small ones are not). When the large lane drains first and small objects share its slots, those slots go
to small objects, so the small lane speeds up; the ETA assumes it does in proportion to its slots, or,
on a host whose CPU is saturated, to the share of the node's bytes the streams had; then it measures the
new speed. Small objects with slots of their own (worker processes) gain nothing from it.

Cluster ETA = the slowest node's ETA (shards are static, so the cluster finishes when its last node
does), plus the final verification (``verify_eta``). (The seed's formula, remaining objects / (sum of
speeds * nodes), mixes units and counts nodes twice.)
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

    def restart(self) -> None:
        self._samples.clear()

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


@dataclass(frozen=True, slots=True)
class LaneProgress:
    """One lane of a node at one moment (cumulative)."""

    bytes_moved: float  # copied plus in flight (not skipped: they cost no time)
    objects_done: float  # copied
    bytes_left: float  # not moved yet
    objects_left: float  # not finished yet (in flight included)

    @property
    def drained(self) -> bool:
        return self.objects_left <= 0 and self.bytes_left <= 0


# After the other lane drained, the expected speed hands over to the measured one over this many seconds:
# the first seconds after the switch are noisy (small objects finish in tasks of dozens), the expectation
# is only a guess, and a wrong guess must not linger.
HANDOVER_S = 5.0


class _Lane:
    """One lane's windowed rate; after the other lane drained, the speed since then, starting from a guess."""

    def __init__(self, window_s: float, object_cost_bytes: float) -> None:
        self.est = RateEstimator(window_s, object_cost_bytes)
        self.last: LaneProgress | None = None
        self.switch: Sample | None = None  # the sample at which the other lane drained
        self.boost = 1.0  # speed-up expected from the other lane's slots

    def add(self, t: float, p: LaneProgress) -> None:
        if not (p.bytes_moved or p.objects_done):  # not started (small objects wait for slots): no rate yet
            self.est.restart()
        self.est.add(t, p.bytes_moved, p.objects_done)
        self.last = p

    def other_drained(self, boost: float) -> None:
        if self.switch is None and self.est.samples:
            self.switch, self.boost = self.est.samples[-1], boost

    def rate(self, k: float) -> float | None:
        s = self.est.samples
        sw = self.switch
        if sw is None or len(s) < 2 or s[-1].t - sw.t >= self.est.window_s:
            return self.est.work_rate(k)
        post_s = s[-1].t - sw.t
        measured = _work(sw, s[-1], k) / post_s if post_s > 0 else 0.0
        before = sw.t - s[0].t
        if before < MIN_SPAN_S:  # too little history to guess from: measure only
            return measured if post_s >= MIN_SPAN_S and measured > 0 else self.est.work_rate(k)
        guess = _work(s[0], sw, k) / before * self.boost
        w = max(1.0 - post_s / HANDOVER_S, 0.0)
        return w * guess + (1.0 - w) * measured or None

    def eta(self) -> float | None:
        """Seconds to finish this lane at its own rate (None: no rate yet)."""
        p = self.last
        if p is None or p.drained:
            return 0.0
        if self.est.span() < MIN_SPAN_S:
            return None
        k = self.est.object_cost()
        rate = self.rate(k)
        if not rate:
            return None
        return (max(p.bytes_left, 0.0) + k * max(p.objects_left, 0.0)) / rate


def _work(a: Sample, b: Sample, k: float) -> float:
    return (b.bytes - a.bytes) + k * (b.objects - a.objects)


class LaneEta:
    """Node ETA from two lanes sharing ``slots`` copy slots.

    Large objects take one slot each and are started first; small objects use the slots left. Both lanes
    are measured while they share the node, so with T_large < T_small the large lane drains first and
    its slots go to small objects: the rest of the small lane runs faster by slots / small slots (the
    agent's own scheduling; on a node limited by something else the measured speed takes over within
    seconds). Small objects draining first free slots that nothing can use: large objects are all
    in flight by then, one slot each. Hence T = T_large + (T_small - T_large) / boost, or T_large.
    With ``shared`` False small objects have slots of their own (the agent's worker processes): the
    boost is 1 and T = max(T_large, T_small). The owner may flip it at any time (workers start late,
    or die and hand their work back to shared slots); it counts from the next sample.
    The whole node's blended estimator stays for speed and work rate, and for when a lane has no rate
    (small objects waiting for slots, no history yet).
    """

    def __init__(self, window_s: float = 60.0, slots: int = 1, object_cost_bytes: float = DEFAULT_OBJECT_COST_BYTES):
        self.slots = max(slots, 1)
        self.shared = True  # small objects run on the slots large ones free
        self.cpu_busy = 0.0  # the host's CPU use (0..1) over the last interval, set by the owner
        self.total = RateEstimator(window_s, object_cost_bytes)
        self.large = _Lane(window_s, object_cost_bytes)
        self.small = _Lane(window_s, object_cost_bytes)
        self._boost = 1.0

    def add(self, t: float, large: LaneProgress, small: LaneProgress) -> None:
        self.total.add(t, large.bytes_moved + small.bytes_moved, large.objects_done + small.objects_done)
        self.large.add(t, large)
        self.small.add(t, small)
        if large.drained:
            self.small.other_drained(self._boost)
        elif small.drained:
            self.large.other_drained(1.0)
        elif self.shared:
            slot = small_lane_boost(self.slots, large.objects_left)
            self._boost = slot + cpu_saturation(self.cpu_busy) * max(self._byte_share() - slot, 0.0)
        else:
            self._boost = 1.0

    def _byte_share(self) -> float:
        """The node's byte rate over the small lane's: the speed-up small objects get from having the whole
        node, when what the lanes share is the node's CPU rather than its slots."""
        node, small = self.total.byte_rate(), self.small.est.byte_rate()
        if not node or not small or self.small.est.span() < MIN_SPAN_S:
            return 1.0
        return max(node / small, 1.0)

    def eta(self) -> float | None:
        lg, sm = self.large.last, self.small.last
        if lg is None or sm is None:
            return None
        if lg.drained and sm.drained:
            return 0.0
        t_large, t_small = self.large.eta(), self.small.eta()
        if t_large is None or t_small is None:
            left_b = lg.bytes_left + sm.bytes_left
            return self.total.eta(left_b, lg.objects_left + sm.objects_left)
        if lg.drained or sm.drained:  # one lane left: its rate already counts the slots it took over
            return max(t_large, t_small)
        return combine_lanes(t_large, t_small, self._boost)


def small_lane_boost(slots: int, large_left: float) -> float:
    """How much faster small objects go once the large objects in flight give their slots back."""
    in_flight = min(max(large_left, 0.0), slots)
    return slots / max(slots - in_flight, 1.0)


CPU_SATURATED_FROM, CPU_SATURATED_AT = 0.75, 0.95


def cpu_saturation(busy: float) -> float:
    """0 on a host with CPU to spare, 1 on a saturated one, linear in between.

    Where slots bound a node (round trips to a distant store), small objects speed up by the slots the
    streams give back (``small_lane_boost``). Where the CPU does (s5cmd hashes every streamed byte twice;
    bench (d): small objects ran 3.3x faster once the streams ended, the slot ratio said 2x), they get
    the node's whole byte rate: the share the streams had. The host's CPU use says which bound holds.
    """
    return min(max((busy - CPU_SATURATED_FROM) / (CPU_SATURATED_AT - CPU_SATURATED_FROM), 0.0), 1.0)


def combine_lanes(t_large: float, t_small: float, boost: float) -> float:
    """Remaining time of a node whose lanes would take t_large and t_small at today's shares."""
    if t_large >= t_small:
        return t_large
    return t_large + (t_small - t_large) / max(boost, 1.0)


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
    known: bool = True  # False: the node has not loaded its shard, so its remaining work is unknown


def cluster_eta(nodes: Iterable[NodeEta]) -> float | None:
    """The slowest node decides. A node without a rate yet (just restarted, too little history) is
    estimated at the mean rate of the nodes that have one; with none known, the ETA is unknown. So is it
    while any node has not loaded its shard: its work, and when it starts on it, are not known yet."""
    ns = list(nodes)
    if not ns or not all(n.known for n in ns):
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


# The final check (operator, after every node finished) lists the target, ListObjectsV2 pages of
# LIST_PAGE_KEYS keys, and reconciles each key with the plan's shard manifests: one request per page and
# a little CPU per key, so its time grows with the object count, not the bytes.
LIST_PAGE_KEYS = 1000
VERIFY_PAGE_S = 0.1  # one page: a round trip to a cloud store (~50-100 ms) plus parsing 1,000 keys


def verify_eta(keys: int, planning_s: float = 0.0) -> float:
    """Seconds the final verification of ``keys`` listed keys takes.

    Planning did the mirror image of it (listed the same keys from the source, wrote the shard
    manifests it reads back), so the time planning took, measured on this very deployment, is the
    estimate; without one (plans from before it was recorded), ``VERIFY_PAGE_S`` a page. Not included:
    the launcher's teardown and the operator noticing that the last node finished (up to a status tick).
    """
    if keys <= 0:
        return 0.0
    if planning_s > 0:
        return planning_s
    return math.ceil(keys / LIST_PAGE_KEYS) * VERIFY_PAGE_S
