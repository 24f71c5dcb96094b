"""Speed and ETA math on synthetic timelines (no clocks, no servers), and the readable forms."""

from __future__ import annotations

import math
import random

import pytest
from skymigrate.core import humanize
from skymigrate.core.eta import (
    DEFAULT_OBJECT_COST_BYTES,
    HANDOVER_S,
    VERIFY_PAGE_S,
    LaneEta,
    LaneProgress,
    NodeEta,
    RateEstimator,
    Sample,
    cluster_eta,
    combine_lanes,
    cpu_saturation,
    fit_object_cost,
    naive_eta,
    small_lane_boost,
    verify_eta,
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


def test_cluster_eta_is_unknown_while_a_node_has_not_loaded_its_shard() -> None:
    running = NodeEta(0, 100.0, 100 * MB, 10, 1 * MB)
    launching = NodeEta(1, None, 0, 0, None, known=False)  # nothing loaded: not "nothing left"
    assert cluster_eta([running, launching]) is None
    assert cluster_eta([launching]) is None
    assert cluster_eta([running, NodeEta(1, 0.0, 0, 0, None)]) == 100.0  # a finished node is known


Timeline = list[tuple[float, LaneProgress, LaneProgress]]


def two_lanes(
    slots: int,
    large: list[float],
    stream_bps: float,
    small_n: int,
    small_size: float,
    ops_per_slot: float,
    small_takes_freed_slots: bool = True,
    stream_bps_alone: float | None = None,
) -> tuple[Timeline, float]:
    """A node sampled once a second: large objects stream one per slot (started first), small objects
    go ``ops_per_slot`` a second on every slot left; returns the samples and the second it finished.
    ``stream_bps_alone``: the streams' speed once small objects are done (the CPU they used is free)."""
    moved, small_done, t = [0.0] * len(large), 0.0, 0
    first_small_slots = slots - min(len(large), slots)
    rows: Timeline = []
    while True:
        done_large = [m >= size for m, size in zip(moved, large, strict=True)]
        lg = LaneProgress(sum(moved), sum(done_large), sum(large) - sum(moved), done_large.count(False))
        sm = LaneProgress(
            small_done * small_size, small_done, (small_n - small_done) * small_size, small_n - small_done
        )
        rows.append((float(t), lg, sm))
        if lg.drained and sm.drained:
            return rows, float(t)
        streaming = [i for i, d in enumerate(done_large) if not d][:slots]
        bps = stream_bps_alone if stream_bps_alone and sm.drained else stream_bps
        for i in streaming:
            moved[i] = min(large[i], moved[i] + bps)
        small_slots = slots - len(streaming) if small_takes_freed_slots else first_small_slots
        small_done = min(float(small_n), small_done + small_slots * ops_per_slot)
        t += 1


def replay(
    rows: Timeline, slots: int, shared: bool = True
) -> tuple[LaneEta, dict[float, tuple[float | None, float | None]]]:
    """(lane ETA, the blended single-rate ETA) at every sample."""
    lanes, blended = LaneEta(window_s=60, slots=slots), RateEstimator(window_s=60)
    lanes.shared = shared
    out: dict[float, tuple[float | None, float | None]] = {}
    for t, lg, sm in rows:
        lanes.add(t, lg, sm)
        blended.add(t, lg.bytes_moved + sm.bytes_moved, lg.objects_done + sm.objects_done)
        left = (lg.bytes_left + sm.bytes_left, lg.objects_left + sm.objects_left)
        out[t] = (lanes.eta(), blended.eta(*left))
    return lanes, out


def heavy_tailed(small_takes_freed_slots: bool = True) -> tuple[Timeline, float]:
    """The bench's workload (d) in miniature: 2 huge objects on 2 of 4 slots, thousands of small ones beside."""
    return two_lanes(4, [600 * MB, 600 * MB], 20 * MB, 3000, 64_000, 10, small_takes_freed_slots)


def test_lanes_predict_a_heavy_tailed_shard_where_one_rate_cannot() -> None:
    rows, end = heavy_tailed()
    assert end == 90  # 30 s streaming beside 20 small/s, then 2,400 small at 40/s
    _, eta = replay(rows, 4)
    for t in (5.0, 15.0, 29.0):  # streaming: the large lane's slots will go to small objects at t=30
        lane, blended = eta[t]
        assert lane == pytest.approx(end - t, rel=0.05), t
        assert blended is not None and blended < 0.6 * (end - t)  # bytes of the streams make it far too low
    for t in (30.0, 31.0, 60.0, 89.0):  # only small objects left, at the doubled speed
        assert eta[t][0] == pytest.approx(end - t, rel=0.05), t


def test_after_the_switch_the_measured_speed_takes_over_from_the_guess() -> None:
    # The small objects do not speed up when the streams end (the node is limited by something else).
    rows, end = heavy_tailed(small_takes_freed_slots=False)
    assert end == 150
    _, eta = replay(rows, 4)
    first = eta[30.0][0]
    assert first is not None and first < 0.6 * (end - 30)  # the guess: twice the speed
    later = eta[30.0 + HANDOVER_S][0]
    assert later == pytest.approx(end - 30 - HANDOVER_S, rel=0.02)  # measured since the switch only
    assert eta[100.0][0] == pytest.approx(50, rel=0.02)


def test_small_objects_on_slots_of_their_own_get_no_boost_when_the_streams_end() -> None:
    # Worker processes: small objects keep their own slots, before and after the streams drain.
    rows, end = heavy_tailed(small_takes_freed_slots=False)
    _, eta = replay(rows, 4, shared=False)
    for t in (5.0, 15.0, 29.0, 30.0, 31.0, 60.0, 149.0):  # no guessed speed-up at t=30, no handover
        assert eta[t][0] == pytest.approx(end - t, rel=0.02), t
    _, shared = replay(rows, 4)
    lane = shared[15.0][0]
    assert lane is not None and lane < 0.7 * (end - 15)  # assuming shared slots would promise twice the speed


def test_small_lane_finishing_first_leaves_the_large_lane_time() -> None:
    rows, end = two_lanes(4, [900 * MB, 900 * MB], 10 * MB, 400, 64_000, 10)
    assert end == 90  # small ones done after 20 s; freed slots cannot speed up a stream already running
    _, eta = replay(rows, 4)
    for t in (10.0, 19.0, 20.0, 50.0):
        assert eta[t][0] == pytest.approx(end - t, rel=0.05), t


def test_streams_that_speed_up_once_small_objects_are_done_are_followed_within_seconds() -> None:
    rows, end = two_lanes(4, [900 * MB, 900 * MB], 10 * MB, 400, 64_000, 10, stream_bps_alone=20 * MB)
    assert end == 55  # 20 s at 10 MB/s each, then 700 MB each at 20 MB/s
    _, eta = replay(rows, 4)
    assert eta[20.0][0] == pytest.approx(70, rel=0.05)  # nothing said the streams would speed up
    t = 20.0 + HANDOVER_S
    assert eta[t][0] == pytest.approx(end - t, rel=0.02)  # not a 60 s window later


def test_small_objects_waiting_for_slots_fall_back_to_the_blended_rate() -> None:
    rows, end = two_lanes(2, [100 * MB] * 4, 10 * MB, 100, 64_000, 10)  # 4 large on 2 slots: small ones wait
    assert end == 25
    lanes, eta = replay(rows[:6], 2)
    lane, single = eta[5.0]
    assert lanes.small.eta() is None  # no rate for a lane that has not moved
    assert lane is not None and lane == single
    _, eta = replay(rows, 2)
    assert eta[23.0][0] == pytest.approx(2.0, rel=0.05)  # their rate counts from when they started


def cpu_bound(small_share: float = 0.25) -> tuple[Timeline, float]:
    """A node bound by its CPU (100 MB/s whatever it moves): two 600 MB streams take 75 % of it beside
    64 KB small objects; once the streams end, the small objects get the whole node, 4x their speed
    (the slot ratio, 4 slots / 2 free, would say 2x)."""
    node_bps, size, n = 100 * MB, 64_000.0, 12_500
    large_total, rows, moved, small_done, t = 1200 * MB, [], 0.0, 0.0, 0
    while True:
        lg = LaneProgress(moved, 2.0 if moved >= large_total else 0.0, large_total - moved,
                          0.0 if moved >= large_total else 2.0)  # fmt: skip
        sm = LaneProgress(small_done * size, small_done, (n - small_done) * size, n - small_done)
        rows.append((float(t), lg, sm))
        if lg.drained and sm.drained:
            return rows, float(t)
        share = small_share if not lg.drained else 1.0
        moved = min(large_total, moved + node_bps * (1 - share))
        small_done = min(float(n), small_done + node_bps * share / size)
        t += 1


def test_on_a_cpu_bound_host_small_objects_get_the_whole_node_when_the_streams_end() -> None:
    rows, end = cpu_bound()
    assert end == 20  # 16 s of streams at 75 MB/s beside 25 MB/s of small objects, then 4 s at 100 MB/s
    lanes = LaneEta(window_s=60, slots=4)
    lanes.cpu_busy = 0.99
    by_slots = LaneEta(window_s=60, slots=4)  # a host with CPU to spare: slots bound the speed-up
    for t, lg, sm in rows:
        lanes.add(t, lg, sm)
        by_slots.add(t, lg, sm)
        if t in (5.0, 10.0, 15.0):
            assert lanes.eta() == pytest.approx(end - t, rel=0.05), t
            slot_eta = by_slots.eta()
            assert slot_eta is not None and slot_eta > 1.2 * (end - t), t


def test_cpu_saturation_ramps_between_spare_and_saturated() -> None:
    assert cpu_saturation(0.0) == cpu_saturation(0.75) == 0.0
    assert cpu_saturation(0.85) == pytest.approx(0.5)
    assert cpu_saturation(0.95) == cpu_saturation(1.0) == 1.0


def test_lane_combination_rules() -> None:
    assert small_lane_boost(4, 2) == 2.0
    assert small_lane_boost(2, 1) == 2.0
    assert small_lane_boost(8, 2) == pytest.approx(8 / 6)
    assert small_lane_boost(4, 0) == 1.0
    assert small_lane_boost(4, 9) == 4.0  # every slot streaming
    assert combine_lanes(10, 50, 2.0) == 30.0  # 10 s shared, then the other 40 s of small work twice as fast
    assert combine_lanes(50, 10, 2.0) == 50.0
    assert combine_lanes(10, 50, 0.5) == 50.0  # never slower than measured


def test_verification_estimate_grows_with_the_keys_and_prefers_the_measured_planning_time() -> None:
    assert verify_eta(0, 5.0) == 0.0  # nothing to list
    assert verify_eta(1, 0.0) == VERIFY_PAGE_S  # one ListObjectsV2 page
    assert verify_eta(1000, 0.0) == VERIFY_PAGE_S
    assert verify_eta(1001, 0.0) == 2 * VERIFY_PAGE_S
    assert verify_eta(1_000_000, 0.0) == pytest.approx(1000 * VERIFY_PAGE_S)
    # Planning listed the same keys and wrote the shards verification reads back: its time is the estimate.
    assert verify_eta(1_000_000, 42.0) == 42.0


def test_lane_eta_unknown_before_samples_and_zero_when_drained() -> None:
    lanes = LaneEta(slots=2)
    assert lanes.eta() is None
    done = LaneProgress(5 * MB, 5, 0, 0)
    lanes.add(0.0, done, done)
    assert lanes.eta() == 0.0


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
