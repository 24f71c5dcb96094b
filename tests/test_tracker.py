"""The node tracker's counters: what goes into each ETA lane and into the heartbeat (no clocks asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from skymigrate.agent.hostcpu import CpuMeter
from skymigrate.agent.tracker import Tracker
from skymigrate.core.eta import LaneProgress
from skymigrate.core.manifest import ObjectEntry
from skymigrate.core.metrics import AgentMetrics

MiB = 2**20
SHARD = [
    ObjectEntry("huge/a", 300 * MiB),
    ObjectEntry("huge/b", 200 * MiB),
    ObjectEntry("small/1", 64 * 1024),
    ObjectEntry("small/2", 1 * MiB),
    ObjectEntry("small/3", 2 * MiB),
    ObjectEntry("edge", 8 * MiB),  # at the threshold: small (the agent streams only what is larger)
]


def tracker() -> Tracker:
    return Tracker(0, AgentMetrics(CollectorRegistry(), "ns", "mig", 0), slots=4)


def test_no_eta_before_the_shard_is_known() -> None:
    t = tracker()
    hb = t.heartbeat("Launching")
    assert hb.objects_total == 0
    assert hb.eta_s is None  # not 0: nothing is done, nothing is known
    assert t.heartbeat("Succeeded").eta_s == 0.0


def test_lanes_split_by_size_and_count_bytes_in_flight() -> None:
    t = tracker()
    t.set_totals(SHARD, large_over=8 * MiB)
    t.skipped([SHARD[2]])  # already in the target: done, but moved nothing
    t.moving("huge/a", 100 * MiB)
    t.moving("small/2", MiB // 2)
    t.copied("small/3", 2 * MiB)
    t.failed("huge/b", 200 * MiB, "gone")
    t.sample()
    large, small = t.estimator.large.last, t.estimator.small.last
    assert large == LaneProgress(100 * MiB, 0, 200 * MiB, 1)
    assert small == LaneProgress(2 * MiB + MiB // 2, 1, MiB // 2 + 8 * MiB, 2)
    hb = t.heartbeat("Running")
    assert (hb.objects_total, hb.objects_done, hb.objects_skipped, hb.objects_failed) == (6, 2, 1, 1)
    assert hb.bytes_total == sum(e.size for e in SHARD)
    assert hb.bytes_done == 64 * 1024 + 2 * MiB
    assert hb.bytes_in_flight == 100 * MiB + MiB // 2
    assert hb.remaining_bytes == large.bytes_left + small.bytes_left
    assert hb.remaining_objects == large.objects_left + small.objects_left
    t.copied("huge/a", 300 * MiB)  # in-flight bytes become copied bytes, not twice
    t.sample()
    assert t.estimator.large.last == LaneProgress(300 * MiB, 1, 0, 0)
    assert t.estimator.large.last.drained


def test_the_slot_sharing_question_is_asked_at_every_sample() -> None:
    """Worker processes start after the tracker exists and may die: the answer can change mid-run."""
    workers: list[str] = []
    t = Tracker(0, AgentMetrics(CollectorRegistry(), "ns", "mig", 0), slots=4, shared_slots=lambda: not workers)
    t.set_totals(SHARD, large_over=8 * MiB)
    t.sample()
    assert t.estimator.shared  # in-process copies: small objects take the slots streams free
    workers.append("started")
    t.sample()
    assert not t.estimator.shared  # their own slots: nothing to gain when the streams end
    workers.clear()  # the pool broke: back to shared slots
    t.sample()
    assert t.estimator.shared
    default = tracker()
    default.sample()
    assert default.estimator.shared  # unless told otherwise: shared, as s5cmd batches are


def test_cpu_meter_reads_the_busy_share_between_readings(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n")  # busy 200 of 1000
    meter = CpuMeter(stat, min_interval_s=0.0)
    stat.write_text("cpu  250 10 190 740 110 0 0 0 0 0\n")  # +250 busy, +50 idle/iowait
    assert meter.busy() == pytest.approx(250 / 300)
    assert meter.busy() == pytest.approx(250 / 300)  # no ticks since: the last value stands
    assert CpuMeter(tmp_path / "missing").busy() == 0.0  # no /proc: no hint, the slot model holds
