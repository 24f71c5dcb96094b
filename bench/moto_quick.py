"""A quick throughput check on two moto servers: skymigrate-agent vs `rclone copy`, same data, same servers.

    python bench/moto_quick.py [--small 200] [--large-mib 200] [--repeat 1]

Two workloads: N x 1 MiB objects, and one large object uploaded with 8 MiB multipart parts (as the AWS CLI
does). Each contender copies into a fresh target bucket; the result is read back and compared sha256 per
key (not timed). skymigrate's time includes planning (the listing), the agent's start-up (about 1.5 s of
Python imports and client set-up) and its own verification; its copy phase alone is shown too.
moto is a Python server and caps throughput far below real S3: the numbers compare tools on the same
servers, they are not what either tool does against a real endpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from skymigrate.core.credentials import Credentials
from skymigrate.core.plan import RunConfig
from skymigrate.core.spec import MigrationSpec
from skymigrate.core.statestore import LocalStateStore
from skymigrate.operator.locals3 import S3Server, running_moto
from skymigrate.operator.planner import list_source, write_plan

MiB = 1 << 20
PART = 8 * MiB
WORKERS = 32  # skymigrate's `s5cmd run` workers for small objects; rclone gets as many transfers


def blob(key: str, size: int) -> bytes:
    """Distinct content per key, cheap to make (a hash-seeded block repeated, stamped per MiB)."""
    seed = hashlib.sha256(key.encode()).digest() * (MiB // 32)
    return b"".join(hashlib.sha256(f"{key}:{i}".encode()).digest() + seed[32:] for i in range(-(-size // MiB)))[:size]


def put(client: Any, bucket: str, key: str, data: bytes) -> None:
    if len(data) <= PART:
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return
    up = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for n, off in enumerate(range(0, len(data), PART), start=1):
        r = client.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=data[off : off + PART])
        parts.append({"ETag": r["ETag"], "PartNumber": n})
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts})


def seed(client: Any, bucket: str, objects: dict[str, bytes]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: put(client, bucket, *kv), objects.items()))


def digests(client: Any, bucket: str) -> dict[str, str]:
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]  # fmt: skip

    def one(k: str) -> tuple[str, str]:
        h = hashlib.sha256()
        for chunk in client.get_object(Bucket=bucket, Key=k)["Body"].iter_chunks(MiB):
            h.update(chunk)
        return k, h.hexdigest()

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, keys))


def bucket(server: S3Server, stem: str) -> str:
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    server.client().create_bucket(Bucket=name)
    return name


def skymigrate(
    src: S3Server, dst: S3Server, sb: str, db: str, work: Path, transfer: dict[str, Any], *flags: str
) -> float:
    """Plan and run one agent; returns the agent's own copy time (from its heartbeat)."""
    state = work / f"state-{db}"
    spec = MigrationSpec.model_validate(
        {
            "source": {"endpoint": src.endpoint_url, "bucket": sb,
                       "credentials": {"env": {"accessKeyId": "A", "secretAccessKey": "B"}}},
            "target": {"endpoint": dst.endpoint_url, "bucket": db,
                       "credentials": {"env": {"accessKeyId": "C", "secretAccessKey": "D"}}},
            "stateStore": {"url": f"file://{state}"},
            "concurrency": 4,
            "transfer": transfer,
        }
    )  # fmt: skip
    store = LocalStateStore(state)
    write_plan(store, RunConfig(name="bench", uid="b", spec=spec), list_source(src.client(), sb, ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SKYMIGRATE_"))}
    env |= Credentials(src.access_key, src.secret_key).to_env("source")
    env |= Credentials(dst.access_key, dst.secret_key).to_env("target")
    argv = [sys.executable, "-m", "skymigrate.agent.cli", "--state", f"file://{state}", "--rank", "0", "--nodes", "1",
            "--metrics-port", "-1", *flags]  # fmt: skip
    with (work / f"agent-{db}.log").open("wb") as log:
        subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    hb = json.loads((state / "progress/0.json").read_text())
    return float(hb["updated_at"] - hb["started_at"])


def rclone(src: S3Server, dst: S3Server, sb: str, db: str, work: Path, transfers: int) -> float | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    for remote, s in (("SRC", src), ("DST", dst)):
        p = f"RCLONE_CONFIG_{remote}_"
        env |= {p + "TYPE": "s3", p + "PROVIDER": "Other", p + "ENDPOINT": s.endpoint_url, p + "REGION": s.region,
                p + "ACCESS_KEY_ID": s.access_key, p + "SECRET_ACCESS_KEY": s.secret_key, p + "FORCE_PATH_STYLE": "true"}  # fmt: skip
    env["RCLONE_CONFIG"] = str(work / "rclone.conf")
    (work / "rclone.conf").write_text("")
    exe = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")
    argv = [exe, "copy", f"src:{sb}", f"dst:{db}", "--transfers", str(transfers), "--checkers", str(transfers),
            "--s3-upload-concurrency", "4", "--s3-chunk-size", f"{PART // MiB}Mi", "--s3-no-check-bucket",
            "--stats", "0", "-q"]  # fmt: skip
    with (work / f"rclone-{db}.log").open("wb") as log:
        subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return None


Runner = Callable[[S3Server, S3Server, str, str, Path], float | None]


def contenders(large: bool) -> dict[str, Runner]:
    out: dict[str, Runner] = {
        "skymigrate-agent": lambda s, d, sb, db, w: skymigrate(s, d, sb, db, w, {}),
        "rclone --transfers 4": lambda s, d, sb, db, w: rclone(s, d, sb, db, w, 4),
    }
    if not large:
        out["rclone --transfers 32"] = lambda s, d, sb, db, w: rclone(s, d, sb, db, w, WORKERS)
        # Small objects in `s5cmd run` batches over the staging area instead of direct GET/PUT.
        out["skymigrate, s5cmd batches"] = lambda s, d, sb, db, w: skymigrate(
            s, d, sb, db, w, {}, "--small-objects", "s5cmd"
        )
        # One `s5cmd cat | s5cmd pipe` pair per object: the seed's way, what batching saves.
        out["skymigrate, pair per object"] = lambda s, d, sb, db, w: skymigrate(
            s, d, sb, db, w, {"smallObjectThreshold": 0}
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=200, help="number of 1 MiB objects")
    ap.add_argument("--large-mib", type=int, default=200, help="size of the large object")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender (the fastest verified one counts)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="skymigrate-moto-quick-"))
    print(f"logs: {work}; load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows: list[tuple[str, str, float, float, float | None]] = []
    with running_moto(work) as src, running_moto(work) as dst:
        workloads = {
            f"{args.small} x 1 MiB": {f"small/{i:05d}": blob(f"s{i}", MiB) for i in range(args.small)},
            f"1 x {args.large_mib} MiB": {"large.bin": blob("large", args.large_mib * MiB)},
        }
        for name, objects in workloads.items():
            sb = bucket(src, "src")
            seed(src.client(), sb, objects)
            want = {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}
            total = sum(map(len, objects.values()))
            del objects
            for who, run in contenders(large=len(want) == 1).items():
                best: tuple[float, float | None] | None = None
                for _ in range(args.repeat):
                    db = bucket(dst, "dst")
                    t0 = time.monotonic()
                    inner = run(src, dst, sb, db, work)
                    dt = time.monotonic() - t0
                    if digests(dst.client(), db) != want:
                        raise SystemExit(f"{who} on {name}: target differs from source (see {work})")
                    best = (dt, inner) if best is None or dt < best[0] else best
                assert best is not None
                dt, inner = best
                rows.append((name, who, dt, total / dt / 1e6, total / inner / 1e6 if inner else None))
                copy = f"  (agent's copy phase {inner:.2f} s, {total / inner / 1e6:.1f} MB/s)" if inner else ""
                print(f"{name:>14}  {who:<28} {dt:7.2f} s  {total / dt / 1e6:7.1f} MB/s  verified{copy}", flush=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    print("\n| workload | tool | seconds | MB/s end to end | MB/s copy phase |\n|---|---|---:|---:|---:|")
    for name, who, s, mbps, inner_mbps in rows:
        print(f"| {name} | {who} | {s:.2f} | {mbps:.1f} | {f'{inner_mbps:.1f}' if inner_mbps else '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
