"""Run a command and measure its whole process tree: wall time, CPU seconds, peak RSS.

CPU comes from ``getrusage(RUSAGE_CHILDREN)`` deltas, which include every descendant that was waited
for (each tool here waits for its own children), so even a 30 ms s5cmd process is counted. Peak RSS is
the largest *sum* over the tree seen by a /proc poller every 0.1 s; very short-lived processes can slip
between polls, so it is a slight under-estimate for the per-object pipeline.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss: int = 0  # bytes, summed over the process tree
    server_cpu_s: float = 0.0  # CPU both S3 servers spent meanwhile
    started_at: float = 0.0  # unix time
    ended_at: float = 0.0
    rc: int = 0
    steps: list[dict[str, float]] = field(default_factory=list)
    cpu_by_kind: dict[str, float] = field(default_factory=dict)  # polled, so short processes may be missing
    rss_by_kind: dict[str, int] = field(default_factory=dict)  # at the moment of the peak

    def add(self, other: Usage) -> None:
        """Sequential steps: times and CPU add up, memory takes the max."""
        if not self.started_at:
            self.started_at = other.started_at
        self.wall_s += other.wall_s
        self.cpu_s += other.cpu_s
        self.server_cpu_s += other.server_cpu_s
        self.peak_rss = max(self.peak_rss, other.peak_rss)
        self.ended_at = other.ended_at
        self.rc = self.rc or other.rc
        for k, v in other.cpu_by_kind.items():
            self.cpu_by_kind[k] = self.cpu_by_kind.get(k, 0.0) + v
        if other.peak_rss >= self.peak_rss:
            self.rss_by_kind = other.rss_by_kind
        self.steps.append({"wall_s": other.wall_s, "cpu_s": other.cpu_s, "server_cpu_s": other.server_cpu_s})


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, cpu ticks, rss pages) of one process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = raw[raw.rindex(b")") + 2 :].split()  # the command name may hold spaces
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[21])


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for p in pids:
        s = _stat(p)
        total += s[1] if s else 0
    return total / TICKS


def kind(pid: int) -> str:
    """A short name for what a process is: "s5cmd cat", "python skymigrate.agent.cli", "rclone"."""
    try:
        argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"  # a zombie: exited before the poller saw what it was
    name = Path(argv[0]).name
    if name.startswith("python"):
        mod = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"), None)
        return f"python {mod or Path(argv[1]).name if len(argv) > 1 else ''}".strip()
    if name == "s5cmd":
        sub = next((a for a in argv[1:] if a in ("cat", "pipe", "run", "cp", "ls", "head", "rm")), "")
        return f"s5cmd {sub}".strip()
    return name


class TreeWatch:
    """Peak summed RSS and per-process CPU of a process tree, by polling /proc."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_rss = 0
        self.rss_by_kind: dict[str, int] = {}
        self._cpu: dict[int, tuple[str, int]] = {}  # pid -> (kind, last cpu ticks)

    def poll(self) -> None:
        children: dict[int, list[int]] = {}
        stats: dict[int, tuple[int, int, int]] = {}
        for d in os.listdir("/proc"):  # noqa: PTH208 - names only; hundreds of Path objects per poll are waste
            if d.isdigit() and (s := _stat(int(d))):
                children.setdefault(s[0], []).append(int(d))
                stats[int(d)] = s
        total, todo = 0, [self.root]
        by_kind: dict[str, int] = {}
        while todo:
            p = todo.pop()
            if p in stats:
                total += stats[p][2]
                # Read every time: a child shows its parent's command line until it execs (and setpriv
                # execs s5cmd), so the last kind seen is the true one.
                name = kind(p)
                if name == "?" and p in self._cpu:  # a zombie: keep what it was
                    name = self._cpu[p][0]
                self._cpu[p] = (name, stats[p][1])
                by_kind[name] = by_kind.get(name, 0) + stats[p][2] * PAGE
            todo += children.get(p, [])
        if total * PAGE > self.peak_rss:
            self.peak_rss = total * PAGE
            self.rss_by_kind = dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))

    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, ticks in self._cpu.values():
            out[name] = round(out.get(name, 0.0) + ticks / TICKS, 2)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    servers: Sequence[int] = (),
    timeout: float = 3600.0,
    on_tick: Callable[[], None] | None = None,
    cwd: Path | None = None,
) -> Usage:
    """Run ``argv`` to completion, output to ``log``; returns its usage (rc included, never raises on rc)."""
    u = Usage()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv0 = cpu_seconds(servers)
    stop = threading.Event()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        u.started_at = time.time()
        t0 = time.monotonic()
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)

        watch = TreeWatch(proc.pid)

        def poll() -> None:
            while not stop.wait(0.1):
                watch.poll()
                if on_tick:
                    on_tick()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            u.rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            u.rc = proc.wait()
        finally:
            stop.set()
            poller.join()
        u.wall_s = time.monotonic() - t0
        u.ended_at = time.time()
        u.peak_rss, u.cpu_by_kind, u.rss_by_kind = watch.peak_rss, watch.cpu_by_kind(), watch.rss_by_kind
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    u.cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    u.server_cpu_s = cpu_seconds(servers) - srv0
    if on_tick:
        on_tick()
    return u
