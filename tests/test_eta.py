"""Speed and ETA math on synthetic timelines (no clocks, no servers), and the readable forms."""

from __future__ import annotations

import math
import random

import pytest
from skymigrate.core import humanize
from skymigrate.core.eta import (
    DEFAULT_OBJECT_COST_BYTES,
    NodeEta,
    RateEstimator,
    Sample,
    cluster_eta,
    fit_object_cost,
    naive_eta,
)

MB = 1_000_000


def feed(est: RateEstimator, t0: float, t1: float, b0: float, o0: float, bps: float, ops: float) -> tuple[float, float]:
    """Samples once a second from t0 to t1 at a constant rate; returns the cumulative (bytes, objects)."""
    b, o = b0, o0
    t = t0
    while t < t1:
        t += 1.0
        b += bps
        o += ops
        est.add(t, b, o)
    return b, o


def test_constant_rate_gives_remaining_over_rate() -> None:
    est = RateEstimator(window_s=60)
    assert est.eta(100 * MB, 10) is None  # no samples yet: unknown, not zero or infinite
    est.add(0.0, 0, 0)
    feed(est, 0, 120, 0, 0, bps=10 * MB, ops=10)
    assert est.byte_rate() == pytest.approx(10 * MB)
    # Remaining work with the same bytes-per-object mix as the history: time = bytes / byte rate.
    assert est.eta(500 * MB, 500) == pytest.approx(50.0, rel=1e-9)
    assert est.eta(0, 0) == 0.0


def test_eta_follows_a_rate_change_within_one_window() -> None:
    est = RateEstimator(window_s=30)
    est.add(0.0, 0, 0)
    b, o = feed(est, 0, 100, 0, 0, bps=10 * MB, ops=10)
    remaining = (1000 * MB, 1000)
    assert est.eta(*remaining) == pytest.approx(100.0, rel=1e-6)
    b, o = feed(est, 100, 115, b, o, bps=2 * MB, ops=2)  # slowed to a fifth, half a window ago
    mid = est.eta(*remaining)
    assert mid is not None and 100 < mid < 500  # already moving towards the new rate
    feed(est, 115, 131, b, o, bps=2 * MB, ops=2)  # a full window after the change
    assert est.eta(*remaining) == pytest.approx(500.0, rel=1e-6)
    # The seed's lifetime average still believes in the old speed.
    lifetime = naive_eta(131, 1000 * MB + 31 * 2 * MB, 3062 * MB)
    assert lifetime is not None and lifetime < 300


def _timeline(per_byte_s: float, per_object_s: float, sizes: list[int]) -> list[Sample]:
    """A node that pays per byte and per object, sampled once a second (finished objects only)."""
    t = 0.0
    done: list[tuple[float, int]] = []
    for s in sizes:
        t += s * per_byte_s + per_object_s
        done.append((t, s))
    samples, i, b, n = [Sample(0.0, 0, 0)], 0, 0, 0
    for sec in range(1, math.ceil(t) + 1):
        while i < len(done) and done[i][0] <= sec:
            b += done[i][1]
            n += 1
            i += 1
        samples.append(Sample(float(sec), b, n))
    return samples


def test_per_object_cost_is_fitted_so_small_and_large_file_shards_differ() -> None:
    per_byte, per_obj = 1 / (100 * MB), 0.05  # 100 MB/s, 50 ms per object -> 5 MB worth of time per object
    rng = random.Random(7)
    # A history mixing runs of small and large objects (as a real shard does), 4 minutes long.
    sizes: list[int] = []
    while sum(s * per_byte + per_obj for s in sizes) < 240:
        sizes += [rng.randint(10_000, 100_000)] * rng.randint(5, 40) if rng.random() < 0.5 else [50 * MB]
    samples = _timeline(per_byte, per_obj, sizes)
    k = fit_object_cost(samples[-61:], DEFAULT_OBJECT_COST_BYTES)
    assert k == pytest.approx(per_obj / per_byte, rel=0.15)
    est = RateEstimator(window_s=60)
    for s in samples:
        est.add(s.t, s.bytes, s.objects)
    # Same bytes left, very different work: 10,000 small files vs 2 large ones.
    true_small = 100 * MB * per_byte + 10_000 * per_obj  # 501 s
    true_large = 100 * MB * per_byte + 2 * per_obj  # 1.1 s
    eta_small, eta_large = est.eta(100 * MB, 10_000), est.eta(100 * MB, 2)
    assert eta_small is not None and eta_large is not None
    assert eta_small == pytest.approx(true_small, rel=0.1)
    assert eta_large == pytest.approx(true_large, rel=0.2)
    assert eta_small > 50 * eta_large  # a bytes-only ETA would call these equal


def test_fit_recovers_exact_costs_and_falls_back_when_undetermined() -> None:
    per_byte, per_obj = 1 / (50 * MB), 0.02
    mixes = [(10 * MB, 1), (1 * MB, 100), (30 * MB, 3), (2 * MB, 50), (5 * MB, 10)]
    samples, t, b, n = [Sample(0, 0, 0)], 0.0, 0.0, 0.0
    for db, dn in mixes:
        t, b, n = t + db * per_byte + dn * per_obj, b + db, n + dn
        samples.append(Sample(t, b, n))
    assert fit_object_cost(samples, 123.0) == pytest.approx(per_obj / per_byte, rel=1e-6)
    # The same mix in every interval cannot separate bytes from objects: keep the prior.
    same = [Sample(float(i), i * 10 * MB, i * 10) for i in range(20)]
    assert fit_object_cost(same, 123.0) == 123.0
    assert fit_object_cost(samples[:3], 123.0) == 123.0  # too few intervals


def test_a_stalled_node_has_no_eta() -> None:
    est = RateEstimator(window_s=10)
    for t in range(30):
        est.add(float(t), 5 * MB, 5)  # nothing moves
    assert est.byte_rate() == 0
    assert est.eta(10 * MB, 10) is None


def test_cluster_eta_is_the_slowest_node() -> None:
    nodes = [
        NodeEta(0, 100.0, 10 * MB, 10, 1 * MB),
        NodeEta(1, 400.0, 40 * MB, 10, 1 * MB),
        NodeEta(2, 250.0, 25 * MB, 10, 1 * MB),
        NodeEta(3, None, 0, 0, None),  # finished
    ]
    assert cluster_eta(nodes) == 400.0
    assert cluster_eta([]) is None


def test_cluster_eta_with_nodes_of_unknown_rate() -> None:
    known = [NodeEta(0, 100.0, 100 * MB, 0, 1 * MB), NodeEta(1, 50.0, 150 * MB, 0, 3 * MB)]
    fresh = NodeEta(2, None, 600 * MB, 0, None)  # just (re)started: estimated at the mean rate (2 MB/s)
    assert cluster_eta([*known, fresh]) == pytest.approx(300.0)
    # Nobody has a rate yet: unknown, not zero.
    assert cluster_eta([NodeEta(0, None, 10, 1, None), NodeEta(1, None, 10, 1, None)]) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (float("nan"), "-"),
        (float("inf"), "-"),
        (-1, "-"),
        (0, "0s"),
        (59.4, "59s"),
        (59.6, "1m 0s"),
        (8130, "2h 15m 30s"),
        (3600, "1h 0m 0s"),
        (90061, "1d 1h 1m 1s"),
    ],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert humanize.duration(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1_234_567, "1.2 MB"), (1.2e12, "1.2 TB"), (5e18, "5000.0 PB")],
)
def test_human_size(n: float, text: str) -> None:
    assert humanize.size(n) == text


def test_human_rate() -> None:
    assert humanize.rate(None) == "-"
    assert humanize.rate(35_610_000) == "35.6 MB/s"
