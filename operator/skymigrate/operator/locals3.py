"""A local S3 server for `skymigrate demo` and the tests: moto's standalone server in its own process on
127.0.0.1, with IAM authentication on, so wrong credentials are rejected as a real endpoint would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from skymigrate.core.credentials import Credentials
from skymigrate.core.s3 import make_client, make_http_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from skymigrate.core.s3http import S3HttpClient

ADMIN_POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> S3Client:
        creds = Credentials(access_key or self.access_key, secret_key or self.secret_key)
        return make_client(self.endpoint_url, creds, self.region)

    def http(self) -> S3HttpClient:
        """The lean client (listings, whole-object GET/PUT) with this server's keys."""
        return make_http_client(self.endpoint_url, Credentials(self.access_key, self.secret_key), self.region)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto_cmd() -> list[str]:
    # moto's server with its SigV4 check fixed for keys like "a+b", "日本" or "x*y" (see moto_rawuri.py).
    return [sys.executable, str(Path(__file__).with_name("moto_rawuri.py"))]


@contextmanager
def running_moto(log_dir: Path | None = None) -> Iterator[S3Server]:
    """Start moto on 127.0.0.1, create an IAM user with an access key, yield the server with that key."""
    port = free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3", MOTO_ALLOW_NONEXISTENT_REGION="true")
    log = (log_dir / f"moto-{port}.log").open("wb") if log_dir else subprocess.DEVNULL
    proc = subprocess.Popen(
        [*_moto_cmd(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)  # noqa: S310 - loopback only
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {url}") from None
                time.sleep(0.2)
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",  # noqa: S106 - moto takes any key before IAM auth starts
        )
        iam.create_user(UserName="skymigrate")
        iam.put_user_policy(UserName="skymigrate", PolicyName="all", PolicyDocument=ADMIN_POLICY)
        key = iam.create_access_key(UserName="skymigrate")["AccessKey"]
        yield S3Server(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log_dir and hasattr(log, "close"):
            log.close()
