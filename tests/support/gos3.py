"""Start the Go S3 server (versitygw, posix backend) on 127.0.0.1 for tests and benchmarks."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .procs import LOOPBACK, ServerProcess, free_port, wait_until
from .tools import tool_path

STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str  # http://127.0.0.1:PORT (path-style addressing)
    access_key: str
    secret_key: str
    region: str
    root_dir: Path  # buckets are directories below it
    log_file: Path
    startup_seconds: float = field(default=0.0, compare=False)


def _answers(port: int) -> bool:
    """Any HTTP response (an anonymous request gets 403 XML) means it is serving."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status > 0
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


@contextmanager
def running_gos3(workdir: Path, access_key: str, secret_key: str, region: str = "us-east-1") -> Iterator[S3Server]:
    """Run versitygw (posix backend, data under workdir/data) until the block exits."""
    binary = tool_path("versitygw")
    workdir = workdir.resolve()
    root = workdir / "data"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_file = workdir / "versitygw.log"
    t0 = time.monotonic()
    # Keys go through the environment, not argv, so they do not show up in `ps`.
    env = {"ROOT_ACCESS_KEY_ID": access_key, "ROOT_SECRET_ACCESS_KEY": secret_key, "PATH": "/usr/bin:/bin"}
    proc = ServerProcess(
        "versitygw",
        [
            str(binary),
            f"--port={LOOPBACK}:{port}",
            f"--region={region}",
            # Every real S3 service keeps connections alive; versitygw closes each one unless told, which
            # would make every contender pay a TCP handshake per request.
            "--keep-alive",
            "--quiet",
            "posix",
            str(root),
        ],
        log_file,
        env=env,
        cwd=workdir,
    )
    try:
        wait_until("versitygw to answer HTTP", lambda: _answers(port), STARTUP_TIMEOUT, [proc])
        yield S3Server(
            endpoint_url=f"http://{LOOPBACK}:{port}",
            access_key=access_key,
            secret_key=secret_key,
            region=region,
            root_dir=root,
            log_file=log_file,
            startup_seconds=time.monotonic() - t0,
        )
    finally:
        proc.stop()
