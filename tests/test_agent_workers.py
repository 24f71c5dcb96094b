"""Small objects copied by worker processes: same bytes, headers and journal as in the agent process,
and no worker outlives its agent."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from tests.conftest import Pair
from tests.support.agentkit import MiB, failed, heartbeat, journal_segments, put_multipart, start_agent, wait_for
from tests.support.data import digests, expected, payload, put_all
from tests.support.throttle import throttled


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_worker_processes_copy_small_objects_exactly(pair: Pair, tmp_path: Path) -> None:
    src = pair.src.client()
    objects = {f"w/{i:04d}": payload(f"w{i}", (i * 4099) % 70_001) for i in range(300)}
    put_all(src, pair.src_bucket, objects)
    # A multipart source under the threshold: its part size comes from the worker's (lazy) boto3 client.
    objects["w/multi"] = payload("multi", 12 * MiB)
    put_multipart(src, pair.src_bucket, "w/multi", objects["w/multi"], 5 * MiB, ContentType="application/x-multi")
    src.put_object(
        Bucket=pair.src_bucket, Key="w/meta", Body=b"headers too", ContentType="text/x-test",
        CacheControl="no-cache", ContentDisposition='attachment; filename="m  t.txt"', Metadata={"who": "worker  two"},
    )  # fmt: skip
    objects["w/meta"] = b"headers too"
    port = int(pair.src.endpoint_url.rsplit(":", 1)[1])
    # A slow link (~5 s for the shard): the agent copies in its own process only until the workers are up.
    with throttled(port, 5e6) as slow:
        spec = pair.spec(
            source={"endpoint": f"http://127.0.0.1:{slow}"},
            concurrency=2,
            transfer={"workerProcesses": 2, "smallObjectThreshold": 16 * MiB},
        )
        pair.plan(spec)
        run = start_agent(pair, tmp_path / "logs")
        assert run.wait() == 0, run.stderr[-3000:]
    assert "Small objects: 2 worker processes" in run.stderr
    by_workers = re.search(r"Small objects: (\d+) copy attempts in worker processes", run.stderr)
    assert by_workers and int(by_workers[1]) > 100, run.stderr[-3000:]
    dst = pair.dst.client()
    assert digests(dst, pair.dst_bucket) == expected(objects)
    head = dst.head_object(Bucket=pair.dst_bucket, Key="w/meta")
    assert (head["ContentType"], head["CacheControl"]) == ("text/x-test", "no-cache")
    assert head["ContentDisposition"] == 'attachment; filename="m  t.txt"' and head["Metadata"] == {
        "who": "worker  two"
    }
    assert dst.head_object(Bucket=pair.dst_bucket, Key="w/multi")["ContentType"] == "application/x-multi"
    hb = heartbeat(pair)
    assert (
        hb["phase"] == "Succeeded"
        and hb["objects_done"] == len(objects)
        and hb["bytes_done"] == sum(map(len, objects.values()))
    )
    assert failed(pair) == []


def test_workers_die_with_a_killed_agent(pair: Pair, tmp_path: Path) -> None:
    objects = {f"k/{i:05d}": payload(f"k{i}", 3000 + i) for i in range(1500)}
    put_all(pair.src.client(), pair.src_bucket, objects)
    port = int(pair.src.endpoint_url.rsplit(":", 1)[1])
    # A slow link (~3 s for the shard), so the agent is surely mid-shard when it is killed.
    with throttled(port, 2e6) as slow:
        pair.plan(pair.spec(source={"endpoint": f"http://127.0.0.1:{slow}"}, transfer={"workerProcesses": 2}))
        run = start_agent(pair, tmp_path / "logs")
        try:
            wait_for("the worker processes", lambda: "worker processes" in run.stderr, 60, run)
            wait_for("the first journal segment", lambda: len(journal_segments(pair)) >= 1, 120, run)
            workers = children(run.proc.pid)
            assert run.proc.poll() is None and len(workers) >= 2, run.stderr[-2000:]  # + the resource tracker
            os.kill(run.proc.pid, signal.SIGKILL)
            run.proc.wait(30)
            deadline = time.monotonic() + 10
            while any(alive(p) for p in workers) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(alive(p) for p in workers), "a worker outlived its agent"
        finally:
            run.kill()
