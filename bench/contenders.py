"""The contenders and the limit: how each moves one workload from the source to the target bucket.

Matched parallelism: 4 objects in flight for large objects everywhere, each with 4 concurrent parts;
for small objects skymigrate's `s5cmd run` batches use 32 workers, so rclone gets --transfers 32 too
(with --transfers 4 it would lose on small files for a reason nobody would accept). The seed keeps its
own NUM_CONCURRENT=4: that is the baseline being measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from skymigrate.agent.s5cmd import binary as s5cmd_binary

from bench import measure
from bench.servers import Side
from bench.workloads import Workload

REPO = Path(__file__).resolve().parents[1]
PARALLEL = 4  # objects (large) / tasks in flight
PART_CONCURRENCY = 4  # parts per large object in flight
SMALL_WORKERS = 32  # workers inside one s5cmd batch


@dataclass
class Job:
    workload: Workload
    src: Side
    dst: Side
    src_bucket: str
    dst_bucket: str
    work: Path  # this run's scratch dir (logs, state, events) on disk
    shm: Path  # RAM-disk scratch
    part_mib: int  # part size of the source's multipart objects
    sky_command: str  # "cli" (skymigrate run) or "direct" (bench.skydriver)
    transfer: dict[str, Any] = field(default_factory=dict)  # spec.transfer overrides
    concurrency: int | None = None  # spec.concurrency override


@dataclass
class Result:
    usage: measure.Usage
    notes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


Contender = Callable[[Job], Result]


def _python_bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name) or name


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SKYMIGRATE_", "RCLONE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _servers(job: Job) -> list[int]:
    return [job.src.pid, job.dst.pid]


# --- the limit -------------------------------------------------------------------------------------
def limit(job: Job) -> Result:
    """s5cmd batch download of the whole bucket to the RAM disk, then batch upload: GET and PUT ceilings."""
    stage = job.shm / "limit"
    s5 = s5cmd_binary()
    common = ["--numworkers", str(PARALLEL * SMALL_WORKERS)]
    cp = ["cp", "-c", str(PART_CONCURRENCY), "-p", str(job.part_mib)]
    total = measure.Usage()
    get = measure.run(
        [s5, "--endpoint-url", job.src.server.endpoint_url, *common, *cp, f"s3://{job.src_bucket}/*", f"{stage}/"],
        env=job.src.s5cmd_env(), log=job.work / "limit.log", servers=_servers(job),
    )  # fmt: skip
    total.add(get)
    put = measure.run(
        [s5, "--endpoint-url", job.dst.server.endpoint_url, *common, *cp, f"{stage}/*", f"s3://{job.dst_bucket}/"],
        env=job.dst.s5cmd_env(), log=job.work / "limit.log", servers=_servers(job),
    )  # fmt: skip
    total.add(put)
    shutil.rmtree(stage, ignore_errors=True)
    return Result(total, {"get_s": get.wall_s, "put_s": put.wall_s})


# --- skymigrate --------------------------------------------------------------------------------------
def manifest(job: Job, nodes: int, transfer: dict[str, Any] | None = None) -> dict[str, Any]:
    conc = job.concurrency or max(1, PARALLEL // nodes)  # total tasks in flight match the others
    transfer = {**(transfer or {}), **job.transfer}
    return {
        "apiVersion": "skymigrate.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": f"bench-{job.workload.name}-{nodes}n"},
        "spec": {
            "source": {
                "endpoint": job.src.server.endpoint_url,
                "bucket": job.src_bucket,
                "credentials": {"env": {"accessKeyId": "BENCH_SRC_AK", "secretAccessKey": "BENCH_SRC_SK"}},
            },
            "target": {
                "endpoint": job.dst.server.endpoint_url,
                "bucket": job.dst_bucket,
                "credentials": {"env": {"accessKeyId": "BENCH_DST_AK", "secretAccessKey": "BENCH_DST_SK"}},
            },
            "nodes": nodes,
            "concurrency": conc,
            # Frequent heartbeats so short runs still give an ETA curve (the default is every 15 s).
            "progress": {"nodeIntervalSeconds": 1, "clusterIntervalSeconds": 1},
            "ramDisk": {"size": "8Gi", "path": str(job.shm)},
            "stateStore": {"url": f"file://{job.work / 'state'}"},
            **({"transfer": transfer} if transfer else {}),
        },
    }


def skymigrate(nodes: int, transfer: dict[str, Any] | None = None) -> Contender:
    def run(job: Job) -> Result:
        path = job.work / "migration.yaml"
        path.write_text(yaml.safe_dump(manifest(job, nodes, transfer), sort_keys=False))
        events = job.work / "events.jsonl"
        env = _base_env()
        env.update(BENCH_SRC_AK=job.src.server.access_key, BENCH_SRC_SK=job.src.server.secret_key)
        env.update(BENCH_DST_AK=job.dst.server.access_key, BENCH_DST_SK=job.dst.server.secret_key)
        env["SKYMIGRATE_RUN_DIR"] = str(job.work / "run")
        if job.sky_command == "cli":
            argv = [_python_bin("skymigrate"), "run", str(path), "--no-tty", "--events", str(events), "--tick", "1"]
        else:
            argv = [sys.executable, "-m", "bench.skydriver", str(path), "--events", str(events)]
        u = measure.run(argv, env=env, log=job.work / "skymigrate.log", servers=_servers(job), cwd=REPO)
        evs = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] if events.exists() else []
        hb = [
            len((job.work / "state" / f"progress/{r}.json").read_bytes())
            for r in range(nodes)
            if (job.work / "state" / f"progress/{r}.json").exists()
        ]
        return Result(u, {"command": job.sky_command, "heartbeat_bytes": max(hb, default=0)}, evs)

    return run


def sky_cli_available() -> bool:
    exe = _python_bin("skymigrate")
    try:
        r = subprocess.run([exe, "run", "--help"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return False
    return r.returncode == 0 and "--events" in r.stdout


# --- rclone ------------------------------------------------------------------------------------------
def rclone(job: Job) -> Result:
    env = _base_env()
    for remote, side in (("SRC", job.src), ("DST", job.dst)):
        p = f"RCLONE_CONFIG_{remote}_"
        env.update(
            {
                p + "TYPE": "s3",
                p + "PROVIDER": "Other",
                p + "ENDPOINT": side.server.endpoint_url,
                p + "ACCESS_KEY_ID": side.server.access_key,
                p + "SECRET_ACCESS_KEY": side.server.secret_key,
                p + "REGION": side.server.region,
                p + "FORCE_PATH_STYLE": "true",
            }
        )
    env["RCLONE_CONFIG"] = str(job.work / "rclone.conf")  # empty: remotes come from the environment
    (job.work / "rclone.conf").write_text("")
    argv = [
        _python_bin("rclone"), "copy", f"src:{job.src_bucket}", f"dst:{job.dst_bucket}",
        "--transfers", str(SMALL_WORKERS), "--checkers", str(SMALL_WORKERS),
        "--multi-thread-streams", str(PART_CONCURRENCY), "--s3-upload-concurrency", str(PART_CONCURRENCY),
        "--s3-chunk-size", f"{job.part_mib}Mi", "--s3-no-check-bucket", "--stats", "0", "-q",
    ]  # fmt: skip
    return Result(measure.run(argv, env=env, log=job.work / "rclone.log", servers=_servers(job)))


# --- the seed ------------------------------------------------------------------------------------------
def seed(job: Job) -> Result:
    env = _base_env()
    env.update(SEED_SRC_AK=job.src.server.access_key, SEED_SRC_SK=job.src.server.secret_key)
    env.update(SEED_DST_AK=job.dst.server.access_key, SEED_DST_SK=job.dst.server.secret_key)
    argv = [
        sys.executable, "-m", "bench.seed", "--s5cmd", s5cmd_binary(),
        "--src-endpoint", job.src.server.endpoint_url, "--src-bucket", job.src_bucket,
        "--dst-endpoint", job.dst.server.endpoint_url, "--dst-bucket", job.dst_bucket, "--concurrent", "4",
    ]  # fmt: skip
    return Result(measure.run(argv, env=env, log=job.work / "seed.log", servers=_servers(job), cwd=REPO))


CONTENDERS: dict[str, Contender] = {
    "limit": limit,
    "skymigrate-1n": skymigrate(1),
    "skymigrate-2n": skymigrate(2),
    # Small objects through `s5cmd run` batches over the RAM disk instead of direct GET/PUT.
    "skymigrate-1n-s5cmd": skymigrate(1, {"smallObjectMethod": "s5cmd"}),
    "rclone": rclone,
    "seed": seed,
}
