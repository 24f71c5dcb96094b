"""`skymigrate demo`: two local S3 servers, a realistic source bucket, and a migration between them."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import yaml
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from skymigrate.operator import standalone
from skymigrate.operator.locals3 import S3Server, running_moto

MiB = 2**20


def demo_objects(scale: float = 1.0, seed: int = 7) -> Iterator[tuple[str, int]]:
    """Many small files, a band of medium ones and a few large ones (sizes only; content is derived)."""
    rng = random.Random(seed)
    for i in range(int(1200 * scale)):
        yield f"logs/2026/{i % 12 + 1:02d}/events-{i:05d}.json", rng.randint(1024, 64 * 1024)
    for i in range(int(60 * scale)):
        yield f"images/photo {i:03d}.jpg", rng.randint(512 * 1024, 2 * MiB)
    for i in range(max(1, int(3 * scale))):
        yield f"archives/part-{i:06d}.zip", rng.randint(16 * MiB, 28 * MiB)


def fill(server: S3Server, bucket: str, scale: float) -> tuple[int, int]:
    client = server.client()
    client.create_bucket(Bucket=bucket)
    objs = list(demo_objects(scale))
    total = sum(s for _, s in objs)
    with Progress(TextColumn("filling source"), BarColumn(), DownloadColumn(), TransferSpeedColumn()) as bar:
        task = bar.add_task("fill", total=total)

        def put(kv: tuple[str, int]) -> None:
            key, size = kv
            body = random.Random(key).randbytes(size)
            ctype = "application/json" if key.endswith(".json") else "image/jpeg" if key.endswith(".jpg") else None
            extra = {"ContentType": ctype} if ctype else {}
            client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"origin": "demo"}, **extra)  # type: ignore[arg-type]
            bar.advance(task, size)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, objs))
    return len(objs), total


def manifest(src: S3Server, dst: S3Server, state: Path, nodes: int) -> dict[str, object]:
    def side(s: S3Server, bucket: str, var: str) -> dict[str, object]:
        return {
            "endpoint": s.endpoint_url,
            "bucket": bucket,
            "credentials": {
                "env": {"accessKeyId": f"{var}_ACCESS_KEY_ID", "secretAccessKey": f"{var}_SECRET_ACCESS_KEY"}
            },
        }

    return {
        "apiVersion": "skymigrate.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "demo"},
        "spec": {
            "source": side(src, "demo-source", "DEMO_SOURCE"),
            "target": side(dst, "demo-target", "DEMO_TARGET"),
            "nodes": nodes,
            "concurrency": 4,
            "stateStore": {"url": f"file://{state}"},
            "progress": {"nodeIntervalSeconds": 2, "clusterIntervalSeconds": 2},
            "ramDisk": {"size": "1Gi"},
        },
    }


def run(
    scale: float = 1.0,
    nodes: int = 2,
    workdir: Path | None = None,
    tty: bool | None = None,
    events: IO[str] | None = None,
) -> int:
    with ExitStack() as stack:
        work = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skymigrate-demo-")))
        print("Starting two local S3 servers (moto) on 127.0.0.1 ...", flush=True)
        src = stack.enter_context(running_moto(work))
        dst = stack.enter_context(running_moto(work))
        print(f"  source {src.endpoint_url}   target {dst.endpoint_url}", flush=True)
        n, total = fill(src, "demo-source", scale)
        print(f"Source bucket demo-source: {n} objects, {total / 1e6:.1f} MB", flush=True)
        dst.client().create_bucket(Bucket="demo-target")
        os.environ.update(
            DEMO_SOURCE_ACCESS_KEY_ID=src.access_key, DEMO_SOURCE_SECRET_ACCESS_KEY=src.secret_key,
            DEMO_TARGET_ACCESS_KEY_ID=dst.access_key, DEMO_TARGET_SECRET_ACCESS_KEY=dst.secret_key,
        )  # fmt: skip
        path = work / "migration.yaml"
        path.write_text(yaml.safe_dump(manifest(src, dst, work / "state", nodes), sort_keys=False))
        print(f"Migration manifest: {path}\n", flush=True)
        return standalone.run(path, launcher="local", tty=tty, events=events)
    return 1
