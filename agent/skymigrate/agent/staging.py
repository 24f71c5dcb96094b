"""The RAM-disk staging area for batches, with the seed's thresholds: warn at 90 %, clean stale
files at 95 %, emergency clean at 98 %. Batches reserve their bytes first, so a full disk slows the
agent down instead of failing transfers.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("skymigrate.agent")

WARN, CLEAN, EMERGENCY = 0.90, 0.95, 0.98
PREFIX = "skymigrate-staging-"
STALE_AFTER_S = 600.0


@dataclass(frozen=True)
class Usage:
    used: int
    capacity: int

    @property
    def ratio(self) -> float:
        return self.used / self.capacity if self.capacity else 0.0

    @property
    def available(self) -> int:
        return max(self.capacity - self.used, 0)


class StagingError(RuntimeError):
    pass


class StagingArea:
    def __init__(self, root: str | None, capacity: int) -> None:
        base = Path(root) if root else Path(tempfile.gettempdir())
        if not base.is_dir():
            raise StagingError(f"RAM disk path {base} does not exist (ramDisk.path): mount it or leave it unset")
        self.base = base
        # A real mount (tmpfs) reports its own usage; a plain directory is bounded by the configured size.
        self.is_mount = os.path.ismount(base)
        self.dir = base / f"{PREFIX}{os.getpid()}"
        self.capacity = min(capacity, shutil.disk_usage(base).total) if not self.is_mount else capacity
        self._reserved = 0
        self._active: set[Path] = set()
        self._cond = threading.Condition()

    def open(self) -> None:
        """Create this agent's directory (and remove those of dead agents) once there is work to stage."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not os.access(self.dir, os.W_OK):
            raise StagingError(f"RAM disk path {self.base} is not writable")
        remove_orphans(self.base)

    def usage(self) -> Usage:
        if self.is_mount:
            du = shutil.disk_usage(self.dir)
            return Usage(du.used, du.total)
        # A plain directory: what running batches reserved, plus whatever no batch owns any more.
        return Usage(self._reserved + self._leftover_bytes(), self.capacity)

    def _leftover_bytes(self) -> int:
        with self._cond:
            active = set(self._active)
        total = 0
        for p in self.dir.iterdir() if self.dir.exists() else []:
            if p in active:
                continue
            try:
                files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
                total += sum(f.stat().st_size for f in files)
            except FileNotFoundError:
                pass
        return total

    @contextmanager
    def reserve(self, nbytes: int, name: str) -> Iterator[Path]:
        """A fresh directory for one batch, once ``nbytes`` fit under the warning threshold."""
        need = min(nbytes, int(self.capacity * WARN))
        path = self.dir / name
        with self._cond:
            while self._reserved and self._reserved + need > self.capacity * WARN:
                self._cond.wait(timeout=1.0)
            self._reserved += need
            self._active.add(path)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            with self._cond:
                self._reserved -= need
                self._active.discard(path)
                self._cond.notify_all()

    def check(self) -> Usage:
        """Run the seed's thresholds; returns the usage after any cleanup."""
        u = self.usage()
        if u.ratio >= EMERGENCY:
            log.warning("🚨 RAM disk %.0f%% full: emergency cleanup of every file no transfer is using", u.ratio * 100)
            self._clean(older_than=0.0)
        elif u.ratio >= CLEAN:
            log.warning("🧹 Cleaning up RAM disk (%.0f%% full)...", u.ratio * 100)
            self._clean(older_than=STALE_AFTER_S)
        elif u.ratio >= WARN:
            log.warning("⚠️ WARNING: RAM disk is %.0f%% full!", u.ratio * 100)
        after = self.usage()
        if after.ratio < u.ratio:
            log.info("✅ Cleanup complete. RAM disk now %.0f%% full", after.ratio * 100)
        return after

    def _clean(self, older_than: float) -> None:
        cutoff = time.time() - older_than
        with self._cond:
            active = set(self._active)
        for p in self.dir.iterdir() if self.dir.exists() else []:
            if p in active:
                continue
            try:
                if p.stat().st_mtime <= cutoff:
                    log.info("     Removing: %s", p)
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def remove_orphans(base: Path) -> list[Path]:
    """Staging directories of agents that died without cleaning up (SIGKILL, OOM): on a RAM disk they
    would hold memory until reboot."""
    removed = []
    for p in base.glob(f"{PREFIX}*"):
        pid = p.name.removeprefix(PREFIX)
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        log.info(
            "🧹 removed %d staging director%s left by stopped agents", len(removed), "ies" if len(removed) > 1 else "y"
        )
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def disk_usage(path: str = "/") -> Usage:
    du = shutil.disk_usage(path)
    return Usage(du.used, du.total)
