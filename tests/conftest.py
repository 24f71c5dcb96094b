from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from skymigrate.core.credentials import Credentials
from skymigrate.core.plan import RunConfig
from skymigrate.core.spec import MigrationSpec
from skymigrate.core.statestore import LocalStateStore
from skymigrate.operator.planner import list_source, write_plan

from tests.support.motoserver import S3Server, running_moto

_bucket_seq = itertools.count()


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def src_server(logs_dir: Path) -> Iterator[S3Server]:
    with running_moto(logs_dir) as s:
        yield s


@pytest.fixture(scope="session")
def dst_server(logs_dir: Path) -> Iterator[S3Server]:
    with running_moto(logs_dir) as s:
        yield s


def new_bucket(server: S3Server, stem: str = "b") -> str:
    name = f"{stem}-{next(_bucket_seq)}-{uuid.uuid4().hex[:6]}"
    server.client().create_bucket(Bucket=name)
    return name


@dataclass
class Pair:
    """A source and a target bucket on two servers with different credentials."""

    src: S3Server
    dst: S3Server
    src_bucket: str
    dst_bucket: str
    state_dir: Path

    def spec(self, **overrides: Any) -> MigrationSpec:
        base: dict[str, Any] = {
            "source": {
                "endpoint": self.src.endpoint_url,
                "bucket": self.src_bucket,
                "credentials": {"env": {"accessKeyId": "SRC_AK", "secretAccessKey": "SRC_SK"}},
            },
            "target": {
                "endpoint": self.dst.endpoint_url,
                "bucket": self.dst_bucket,
                "credentials": {"env": {"accessKeyId": "DST_AK", "secretAccessKey": "DST_SK"}},
            },
            "stateStore": {"url": f"file://{self.state_dir}"},
            "progress": {"nodeIntervalSeconds": 1},
            "ramDisk": {"size": "2Gi"},
        }
        for k, v in overrides.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                base[k] = {**base[k], **v}
            else:
                base[k] = v
        return MigrationSpec.model_validate(base)

    def env(self, *, src_secret: str | None = None, dst_secret: str | None = None) -> dict[str, str]:
        """Process environment for an agent: credentials as the launcher passes them."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYMIGRATE_", "AWS_"))}
        env.update(Credentials(self.src.access_key, src_secret or self.src.secret_key).to_env("source"))
        env.update(Credentials(self.dst.access_key, dst_secret or self.dst.secret_key).to_env("target"))
        return env

    def plan(self, spec: MigrationSpec) -> LocalStateStore:
        store = LocalStateStore(self.state_dir)
        cfg = RunConfig(name="test", uid="u1", spec=spec)
        write_plan(store, cfg, list_source(self.src.http(), spec.source.bucket, spec.source.prefix))
        return store

    def argv(self, rank: int = 0, nodes: int = 1, *extra: str, metrics_port: str = "-1") -> list[str]:
        """The agent's command line, as a launcher builds it."""
        return [
            sys.executable, "-m", "skymigrate.agent.cli", "--state", f"file://{self.state_dir}",
            "--rank", str(rank), "--nodes", str(nodes), "--metrics-port", metrics_port, *extra,
        ]  # fmt: skip

    def agent(
        self,
        rank: int = 0,
        nodes: int = 1,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 300,
        extra: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run the agent to the end (``prefix``: a wrapper command such as setpriv)."""
        return subprocess.run(
            [*prefix, *self.argv(rank, nodes, *extra)],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def pair(src_server: S3Server, dst_server: S3Server, tmp_path: Path) -> Pair:
    return Pair(
        src_server, dst_server, new_bucket(src_server, "src"), new_bucket(dst_server, "dst"), tmp_path / "state"
    )
