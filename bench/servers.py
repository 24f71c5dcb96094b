"""Two Go S3 servers (versitygw, posix backend) on 127.0.0.1 with different credentials."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tests/support is not an installed package
    sys.path.insert(0, str(REPO))

from skymigrate.core.credentials import Credentials  # noqa: E402
from skymigrate.core.s3 import make_client  # noqa: E402

from tests.support.gos3 import S3Server, running_gos3  # noqa: E402


@dataclass
class Side:
    name: str  # "src" | "dst"
    server: S3Server
    pid: int

    @property
    def creds(self) -> Credentials:
        return Credentials(self.server.access_key, self.server.secret_key)

    def client(self) -> Any:
        return make_client(self.server.endpoint_url, self.creds, max_pool=64)

    def create(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def drop(self, bucket: str) -> None:
        """Delete a bucket and everything in it. The posix backend keeps a bucket as one directory,
        so removing it is instant and costs the server no CPU between contenders."""
        shutil.rmtree(self.server.root_dir / bucket, ignore_errors=True)

    def s5cmd_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SKYMIGRATE_"))}
        env.update(AWS_ACCESS_KEY_ID=self.server.access_key, AWS_SECRET_ACCESS_KEY=self.server.secret_key)
        env["AWS_REGION"] = self.server.region
        return env


def _server_pid(port: str) -> int:
    """The versitygw process listening on ``port`` (running_gos3 does not expose it)."""
    for d in os.listdir("/proc"):  # noqa: PTH208 - names only, millions of Path objects would be waste
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"versitygw") and f"--port=127.0.0.1:{port}".encode() in cmd:
            return int(d)
    raise RuntimeError(f"versitygw on port {port} not found")


@contextmanager
def two_servers(root: Path) -> Iterator[tuple[Side, Side]]:
    """Source and target servers with data under ``root``; random per-run credentials."""
    with ExitStack() as stack:
        sides = []
        for name in ("src", "dst"):
            ak = f"BENCH{name.upper()}{secrets.token_hex(4).upper()}"
            srv = stack.enter_context(running_gos3(root / name, ak, secrets.token_urlsafe(24)))
            sides.append(Side(name, srv, _server_pid(srv.endpoint_url.rsplit(":", 1)[1])))
        yield sides[0], sides[1]
