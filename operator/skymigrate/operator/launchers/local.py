"""Agents as processes on this host: the embedded default, and what the tests drive end to end.

Each agent's pid is written to a run directory, so an operator that restarts re-attaches to agents
that are still running instead of starting them twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from skymigrate.operator.launchers.base import LaunchRequest, LaunchStatus, NodeState


def run_root() -> Path:
    return Path(os.environ.get("SKYMIGRATE_RUN_DIR", Path.home() / ".cache" / "skymigrate" / "run"))


def agent_command(req: LaunchRequest, rank: int) -> list[str]:
    return [
        sys.executable, "-m", "skymigrate.agent.cli",
        "--state", req.state_url,
        "--rank", str(rank),
        "--nodes", str(req.spec.nodes),
        "--metrics-port", os.environ.get("SKYMIGRATE_AGENT_METRICS_PORT", "0"),
        "--metrics-addr", "127.0.0.1",
    ]  # fmt: skip


def _alive(pid: int, uid: str) -> bool:
    """Is ``pid`` still one of this migration's agents (not a recycled pid)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return b"skymigrate.agent.cli" in cmdline and uid.encode() in cmdline and stat.split(")")[-1].split()[0] != "Z"


class LocalLauncher:
    name = "local"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or run_root()
        self._procs: dict[tuple[str, int], subprocess.Popen[bytes]] = {}

    def _dir(self, req: LaunchRequest) -> Path:
        # Keyed by the state root too: a standalone run keeps its uid across runs, but a different state
        # store is a different migration, whose agents' exit files must not be mistaken for these.
        d = self.root / f"{req.uid}-{hashlib.sha256(req.state_url.encode()).hexdigest()[:8]}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _pid(self, req: LaunchRequest, rank: int) -> int | None:
        try:
            return int((self._dir(req) / f"{rank}.pid").read_text())
        except (OSError, ValueError):
            return None

    def _start(self, req: LaunchRequest, rank: int) -> None:
        d = self._dir(req)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYMIGRATE_SOURCE_", "SKYMIGRATE_TARGET_"))}
        env.update(req.secret_env)
        env["SKYMIGRATE_MIGRATION_UID"] = req.uid
        with (d / f"{rank}.log").open("ab") as log:
            p = subprocess.Popen(
                [*agent_command(req, rank), "--uid-tag", req.uid],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._procs[(req.uid, rank)] = p
        (d / f"{rank}.pid").write_text(str(p.pid))
        (d / f"{rank}.exit").unlink(missing_ok=True)

    def launch(self, req: LaunchRequest) -> None:
        for rank in range(req.spec.nodes):
            pid = self._pid(req, rank)
            if pid and _alive(pid, req.uid):
                continue  # re-attach: it is still working
            if (self._dir(req) / f"{rank}.exit").exists():
                continue
            self._start(req, rank)

    def relaunch(self, req: LaunchRequest, ranks: list[int]) -> None:
        for rank in ranks:
            (self._dir(req) / f"{rank}.exit").unlink(missing_ok=True)
            self._start(req, rank)

    def poll(self, req: LaunchRequest) -> LaunchStatus:
        nodes: list[NodeState] = []
        d = self._dir(req)
        for rank in range(req.spec.nodes):
            p = self._procs.get((req.uid, rank))
            exit_file = d / f"{rank}.exit"
            if p is not None and p.poll() is not None:
                exit_file.write_text(str(p.returncode))
                del self._procs[(req.uid, rank)]
            if exit_file.exists():
                code = int(exit_file.read_text() or "1")
                nodes.append(NodeState(rank, "Succeeded" if code == 0 else "Failed", f"agent exited {code}", code))
                continue
            pid = self._pid(req, rank)
            if p is not None or (pid and _alive(pid, req.uid)):
                nodes.append(NodeState(rank, "Running"))
            elif pid:
                # Started by an earlier operator and gone without us seeing its exit: the heartbeat says how it ended.
                nodes.append(NodeState(rank, "Lost", "agent process is gone"))
            else:
                nodes.append(NodeState(rank, "Pending"))
        if all(n.phase in ("Succeeded", "Failed", "Lost") for n in nodes):
            phase = "Finished"
        elif any(n.phase == "Pending" for n in nodes):
            phase = "Launching"
        else:
            phase = "Running"
        return LaunchStatus(phase, nodes)  # type: ignore[arg-type]

    def wait(self, req: LaunchRequest, timeout: float) -> None:
        # A short run's end would otherwise wait out a whole tick (up to 1 s of a 3 s copy on the bench).
        # Agents re-attached by pid (not our children) cannot be waited on: sleep the tick.
        procs = [p for (uid, _), p in self._procs.items() if uid == req.uid]
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if procs and any(p.poll() is not None for p in procs):
                return
            time.sleep(min(0.05, left) if procs else left)

    def teardown(self, req: LaunchRequest) -> None:
        for rank in range(req.spec.nodes):
            p = self._procs.pop((req.uid, rank), None)
            pid = p.pid if p else self._pid(req, rank)
            if pid and (p is not None or _alive(pid, req.uid)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and (p.poll() is None if p else _alive(pid, req.uid)):
                    time.sleep(0.1)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                if p:
                    p.wait()

    def log_tail(self, req: LaunchRequest, rank: int, lines: int = 20) -> str:
        try:
            return "\n".join((self._dir(req) / f"{rank}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
