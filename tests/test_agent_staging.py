"""The RAM-disk staging area: the seed's thresholds (warn 90 %, clean stale files 95 %, emergency 98 %),
reservations that wait instead of overfilling, and cleanup of directories left by killed agents."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from skymigrate.agent.staging import STALE_AFTER_S, StagingArea, StagingError


def _leftovers(area: StagingArea, stale_bytes: int, fresh_bytes: int) -> tuple[Path, Path]:
    """Files no transfer owns any more (a crashed batch): one stale, one recent."""
    stale, fresh = area.dir / "old-batch", area.dir / "new-batch"
    for p, n in ((stale, stale_bytes), (fresh, fresh_bytes)):
        p.mkdir()
        (p / "0").write_bytes(b"x" * n)
    old = time.time() - STALE_AFTER_S - 60
    os.utime(stale, (old, old))
    return stale, fresh


@pytest.mark.parametrize(
    ("reserved", "stale_b", "fresh_b", "warned", "cleaned", "emergency", "after"),
    [
        (800, 10, 10, False, False, False, 820),  # 82 %: nothing to do
        (880, 10, 10, True, False, False, 900),  # 90 %: warn
        (900, 40, 20, False, True, False, 920),  # 96 %: remove stale leftovers only
        (900, 50, 40, False, False, True, 900),  # 99 %: remove every leftover
    ],
)
def test_thresholds(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    reserved: int,
    stale_b: int,
    fresh_b: int,
    warned: bool,
    cleaned: bool,
    emergency: bool,
    after: int,
) -> None:
    area = StagingArea(str(tmp_path), capacity=1000)
    area.open()
    try:
        stale, fresh = _leftovers(area, stale_b, fresh_b)
        caplog.set_level(logging.INFO, logger="skymigrate.agent")
        with area.reserve(reserved, "active") as active:
            active.mkdir()
            (active / "0").write_bytes(b"in use")
            os.utime(active, (0, 0))  # old, but a transfer is using it: never removed
            assert area.usage().used == reserved + stale_b + fresh_b
            u = area.check()
            assert (u.used, u.capacity) == (after, 1000)
            assert active.exists()
        assert ("WARNING: RAM disk is 90% full!" in caplog.text) == warned
        assert ("Cleaning up RAM disk (96% full)" in caplog.text) == cleaned
        assert ("RAM disk 99% full: emergency cleanup" in caplog.text) == emergency
        assert ("Cleanup complete. RAM disk now" in caplog.text) == (cleaned or emergency)
        assert stale.exists() != (cleaned or emergency)
        assert fresh.exists() != emergency
        assert not active.exists()  # removed when its reservation ends
    finally:
        area.close()
    assert not area.dir.exists()


def test_reservations_wait_for_room_instead_of_overfilling(tmp_path: Path) -> None:
    area = StagingArea(str(tmp_path), capacity=1000)
    area.open()
    order: list[str] = []
    with area.reserve(600, "a"):
        t = threading.Thread(target=lambda: _take(area, order))
        t.start()
        time.sleep(0.3)
        order.append("a released")  # the second batch (600) cannot fit next to the first under 90 %
    t.join(10)
    assert order == ["a released", "b reserved"]
    with area.reserve(5000, "huge") as _:  # larger than the area: capped so it can still run alone
        assert area.usage().used == 900
    area.close()


def _take(area: StagingArea, order: list[str]) -> None:
    with area.reserve(600, "b"):
        order.append("b reserved")


def test_directories_of_dead_agents_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"skymigrate-staging-{int(dead.stdout)}"
    (orphan / "t1").mkdir(parents=True)
    (orphan / "t1" / "0").write_bytes(b"left behind by a SIGKILL")
    alive = tmp_path / f"skymigrate-staging-{os.getppid()}"  # a live process: not ours to touch
    alive.mkdir()
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()
    area = StagingArea(str(tmp_path), capacity=1000)
    assert orphan.exists()  # nothing happens before there is work to stage
    area.open()
    assert not orphan.exists() and alive.exists() and unrelated.exists() and area.dir.exists()
    area.close()


def test_a_missing_ram_disk_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match=r"RAM disk path .*/not-mounted does not exist \(ramDisk.path\)"):
        StagingArea(str(tmp_path / "not-mounted"), capacity=1000)
