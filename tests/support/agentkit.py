"""Helpers for the node-agent tests: a background agent, state-store readers, multipart uploads,
a /metrics scraper and a secrets check."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import Pair

MiB = 1 << 20


@dataclass
class Running:
    """An agent started in the background; output goes to files so a long run cannot fill a pipe."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def start_agent(
    pair: Pair,
    logs: Path,
    rank: int = 0,
    nodes: int = 1,
    *,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    metrics_port: int = -1,
    tag: str = "run",
) -> Running:
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{tag}.out", logs / f"{tag}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            pair.argv(rank, nodes, "--metrics-addr", "127.0.0.1", *extra, metrics_port=str(metrics_port)),
            env=env or pair.env(),
            stdout=o,
            stderr=e,
        )
    return Running(proc, out, err)


def wait_for(what: str, check: Callable[[], bool], timeout: float, running: Running | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if running is not None and running.proc.poll() is not None:
            raise AssertionError(f"agent exited {running.proc.returncode} before {what}:\n{running.stderr[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def heartbeat(pair: Pair, rank: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pair.state_dir / f"progress/{rank}.json").read_text())
    return data


def failed(pair: Pair, rank: int = 0) -> list[dict[str, Any]]:
    p = pair.state_dir / f"failed/{rank}.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def journal_segments(pair: Pair, rank: int = 0) -> list[Path]:
    d = pair.state_dir / f"journal/{rank}"
    return sorted(d.glob("*.jsonl.gz")) if d.is_dir() else []


def put_multipart(client: Any, bucket: str, key: str, data: bytes, part_size: int, **extra: Any) -> str:
    """Upload ``data`` in parts of ``part_size`` (as an SDK would); returns the server's ETag."""
    up = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    parts = []
    for n, off in enumerate(range(0, len(data), part_size), start=1):
        r = client.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=data[off : off + part_size])
        parts.append({"ETag": r["ETag"], "PartNumber": n})
    r = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts})
    return str(r["ETag"]).strip('"')


def etag(client: Any, bucket: str, key: str) -> str:
    return str(client.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def assert_no_secrets(secrets: Iterable[str], *texts: str) -> None:
    for s in secrets:
        for t in texts:
            assert s not in t, "a secret value leaked into agent output or state"


def state_texts(pair: Pair) -> list[str]:
    """Every file the agent wrote to the state store, as text (gzip'd journals decoded)."""
    import gzip

    out = []
    for p in pair.state_dir.rglob("*"):
        if p.is_file():
            raw = p.read_bytes()
            out.append((gzip.decompress(raw) if p.name.endswith(".gz") else raw).decode(errors="replace"))
    return out
