"""A real Prometheus (Debian's package; scripts/install-prometheus.sh) on 127.0.0.1 for tests.

Scrape targets come from file service discovery (one JSON file per job), so a test can add targets
such as agents or the operator after Prometheus started, without a reload.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .procs import LOOPBACK, ServerProcess, free_port, wait_until

INSTALL_HINT = "run scripts/install-prometheus.sh (Debian's prometheus package)"


class PrometheusError(RuntimeError):
    """The HTTP API answered with an error (bad PromQL, for instance)."""


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@dataclass(frozen=True)
class Prometheus:
    url: str
    workdir: Path
    process: ServerProcess

    def set_targets(self, job: str, targets: Sequence[str], labels: dict[str, str] | None = None) -> None:
        """Replace the host:port targets of a job (written atomically: Prometheus watches the file)."""
        path = self.workdir / f"targets-{job}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": list(targets), "labels": labels or {}}]))
        tmp.replace(path)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback http
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
            raise PrometheusError(f"{path} {params}: HTTP {e.code}: {body.get('error', body)}") from e
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the vector (a scalar result becomes one unlabelled sample)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] == "vector":
            result: list[dict[str, Any]] = data["result"]
            return result
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        raise PrometheusError(f"unexpected result type {data['resultType']} for {expr}")

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        result: list[dict[str, str]] = self.api(
            "series", **{"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        )
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return result


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:  # noqa: S310 - loopback http
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def running_prometheus(workdir: Path, jobs: Sequence[str], scrape_interval: str = "1s") -> Iterator[Prometheus]:
    """Run Prometheus on a free loopback port with one file-SD job per name in jobs (no targets yet)."""
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError(f"no prometheus binary on PATH: {INSTALL_HINT}")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": [
            {
                "job_name": job,
                # Keep the exporters' own namespace/migration/node labels, as the chart's monitors do.
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(workdir / f"targets-{job}.json")], "refresh_interval": "1s"}],
            }
            for job in jobs
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    for job in jobs:
        (workdir / f"targets-{job}.json").write_text("[]")
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    proc = ServerProcess(
        "prometheus",
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
        cwd=workdir,
    )
    try:
        wait_until("prometheus /-/ready", lambda: _ready(url), 60.0, [proc], interval=0.2)
        yield Prometheus(url, workdir, proc)
    finally:
        proc.stop()
