"""A real API server with the Migration CRD installed, and the real operator process watching it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .kube import KubeCluster
from .procs import LOOPBACK, ServerProcess, free_port, wait_until
from .tools import tool_path

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "skymigrate.io", "v1alpha1", "migrations"


def kubectl(
    cluster: KubeCluster, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [str(tool_path("kubectl")), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}")
    return r


def install_crd(cluster: KubeCluster) -> None:
    kubectl(cluster, "apply", "-f", str(ROOT / "crds" / "migration.yaml"))
    # `kubectl wait` errors out if the CRD has no conditions yet, so poll instead.
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'

    def established() -> bool:
        r = kubectl(cluster, "get", "crd", "migrations.skymigrate.io", "-o", f"jsonpath={jsonpath}", check=False)
        return r.stdout.strip() == "True"

    wait_for("the Migration CRD to be Established", established, 60)


class OperatorProcess:
    """`skymigrate operator` as a real process (so it can be killed and restarted)."""

    def __init__(self, cluster: KubeCluster, namespace: str, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.cluster, self.namespace, self.workdir = cluster, namespace, workdir
        self.extra_args = extra_args
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: ServerProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SKYMIGRATE_"))}
        env.update(KUBECONFIG=str(self.cluster.kubeconfig), SKYMIGRATE_RUN_DIR=str(self.workdir / "run"))
        self.proc = ServerProcess(
            "operator",
            [sys.executable, "-m", "skymigrate.operator.cli", "operator", "--namespace", self.namespace,
             "--metrics-port", str(self.metrics_port), "--metrics-addr", LOOPBACK,
             "--liveness", f"http://{LOOPBACK}:{self.health_port}/healthz", *self.extra_args],
            self.workdir / f"operator-{self.starts}.log", env=env,
        )  # fmt: skip
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{self.health_port}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        wait_until("operator liveness", healthy, 60.0, [self.proc])

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        assert self.proc is not None
        self.proc.proc.kill()
        self.proc.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("operator-*.log")))


def get_migration(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    r = kubectl(cluster, "get", f"{PLURAL}.{GROUP}", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def wait_for(what: str, fn: Callable[[], Any], timeout: float, on_timeout: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{on_timeout()}")


def events_for(cluster: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    r = kubectl(cluster, "get", "events", "-n", namespace, "-o", "json")
    return [e for e in json.loads(r.stdout)["items"] if e.get("involvedObject", {}).get("name") == name]
