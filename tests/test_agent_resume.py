"""Resume: a killed agent restarts where it stopped, re-copies nothing it verified, leaves nothing partial."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path
from typing import Any

from tests.conftest import Pair
from tests.support.agentkit import (
    MiB,
    etag,
    failed,
    heartbeat,
    journal_segments,
    open_uploads,
    put_multipart,
    start_agent,
    wait_for,
)
from tests.support.data import digests, expected, payload, put_all


def journaled(pair: Pair) -> set[str]:
    return {
        json.loads(line)["k"] for p in journal_segments(pair) for line in gzip.decompress(p.read_bytes()).splitlines()
    }


def modified(client: Any, bucket: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out |= {o["Key"]: o["LastModified"] for o in page.get("Contents", [])}
    return out


def start_line(stderr: str) -> tuple[int, int, int]:
    """(journaled, identical, to copy) from the agent's opening log line."""
    m = re.search(r"(\d+) already done \(journal\), (\d+) already identical in target; (\d+) to copy", stderr)
    assert m, stderr[-2000:]
    return int(m[1]), int(m[2]), int(m[3])


def test_killed_mid_shard_resumes_without_recopying(pair: Pair, tmp_path: Path) -> None:
    objects = {f"r/{i:04d}": payload(f"r{i}", 20_000 + 131 * i) for i in range(200)}
    put_all(pair.src.client(), pair.src_bucket, objects)
    # Small s5cmd batches one at a time are slow on purpose: the shard takes long enough to be killed mid-way.
    pair.plan(pair.spec(concurrency=1, transfer={"batchMaxObjects": 5}))
    run = start_agent(pair, tmp_path / "logs", tag="first", extra=("--small-objects", "s5cmd"))
    try:
        wait_for("two journal segments", lambda: len(journal_segments(pair)) >= 2, 120, run)
    finally:
        run.kill()
    done_before = journaled(pair)
    assert 0 < len(done_before) < len(objects), "the kill should land mid-shard"
    dst = pair.dst.client()
    stamps = modified(dst, pair.dst_bucket)
    time.sleep(1.1)  # LastModified has one-second resolution: a re-copy would now show

    second = start_agent(pair, tmp_path / "logs", tag="second")
    assert second.wait() == 0, second.stderr[-4000:]
    from_journal, identical, to_copy = start_line(second.stderr)
    assert from_journal == len(done_before)
    assert from_journal + identical + to_copy == len(objects)
    after = modified(dst, pair.dst_bucket)
    assert {k: after[k] for k in done_before} == {k: stamps[k] for k in done_before}  # not re-copied
    hb = heartbeat(pair)
    assert hb["phase"] == "Succeeded" and hb["objects_done"] == len(objects) and hb["objects_failed"] == 0
    assert hb["objects_skipped"] == from_journal + identical
    assert digests(dst, pair.dst_bucket) == expected(objects)
    assert journaled(pair) == set(objects)


def test_kill_during_a_streamed_object_leaves_nothing_partial(pair: Pair, tmp_path: Path) -> None:
    src = pair.src.client()
    big = payload("big", 30 * MiB)
    src_etag = put_multipart(src, pair.src_bucket, "big.bin", big, 5 * MiB)
    objects = {"big.bin": big, "small.txt": payload("s", 100)}
    src.put_object(Bucket=pair.src_bucket, Key="small.txt", Body=objects["small.txt"])
    pair.plan(pair.spec(concurrency=1, transfer={"smallObjectThreshold": MiB}))
    dst = pair.dst.client()
    run = start_agent(pair, tmp_path / "logs", tag="first")
    try:
        wait_for("a multipart upload in the target", lambda: bool(open_uploads(dst, pair.dst_bucket)), 120, run)
    finally:
        run.kill()
    time.sleep(1.0)  # anything a surviving s5cmd would still do, it would do now
    listed = modified(dst, pair.dst_bucket)
    if "big.bin" in listed:  # either absent or complete and correct: never a partial object
        assert dst.get_object(Bucket=pair.dst_bucket, Key="big.bin")["Body"].read() == big

    second = start_agent(pair, tmp_path / "logs", tag="second")
    assert second.wait() == 0, second.stderr[-4000:]
    assert failed(pair) == []
    assert digests(dst, pair.dst_bucket) == expected(objects)
    assert etag(dst, pair.dst_bucket, "big.bin") == src_etag
    assert open_uploads(dst, pair.dst_bucket) == []  # the killed upload was aborted on restart


def test_fresh_state_skips_objects_already_identical_in_target(pair: Pair) -> None:
    objects = {f"i/{i:03d}": payload(f"i{i}", 5000 + i) for i in range(40)}
    put_all(pair.src.client(), pair.src_bucket, objects)
    dst = pair.dst.client()
    same = {k: v for k, v in objects.items() if int(k[2:]) % 2 == 0}
    put_all(dst, pair.dst_bucket, same)
    # Same key and size, different bytes: must be copied again.
    stale = {"i/001": payload("other", len(objects["i/001"]))}
    put_all(dst, pair.dst_bucket, stale)
    stamps = modified(dst, pair.dst_bucket)
    time.sleep(1.1)
    pair.plan(pair.spec(transfer={"batchMaxObjects": 8}))
    r = pair.agent()
    assert r.returncode == 0, r.stderr[-4000:]
    from_journal, identical, to_copy = start_line(r.stderr)
    assert (from_journal, identical, to_copy) == (0, len(same), len(objects) - len(same))
    after = modified(dst, pair.dst_bucket)
    assert {k: after[k] for k in same} == {k: stamps[k] for k in same}
    assert after["i/001"] != stamps["i/001"]
    assert digests(dst, pair.dst_bucket) == expected(objects)
    hb = heartbeat(pair)
    assert hb["objects_skipped"] == len(same) and hb["objects_done"] == len(objects)


def test_sigterm_records_every_verified_object_before_stopping(pair: Pair, tmp_path: Path) -> None:
    objects = {f"t/{i:04d}": payload(f"t{i}", 30_000 + i) for i in range(300)}
    put_all(pair.src.client(), pair.src_bucket, objects)
    # One heartbeat early on, then none for an hour: only the SIGTERM handler can journal the rest.
    pair.plan(pair.spec(concurrency=1, progress={"nodeIntervalSeconds": 3600}, transfer={"batchMaxObjects": 5}))
    run = start_agent(pair, tmp_path / "logs", tag="first", extra=("--small-objects", "s5cmd"))
    dst = pair.dst.client()
    try:
        wait_for("the early journal segment", lambda: len(journal_segments(pair)) >= 1, 120, run)
        early = journaled(pair)
        wait_for("more copies", lambda: len(modified(dst, pair.dst_bucket)) >= len(early) + 40, 120, run)
        in_target = set(modified(dst, pair.dst_bucket))
        run.proc.terminate()
        assert run.wait(30) == 143, run.stderr[-3000:]
    finally:
        run.kill()
    assert "SIGTERM: recording finished objects" in run.stderr
    done = journaled(pair)
    assert len(done) >= len(in_target) - 5  # all but the batch in flight (its objects are listed but unverified)
    assert done <= set(modified(dst, pair.dst_bucket))
    assert len(done) < len(objects)
    second = start_agent(pair, tmp_path / "logs", tag="second")
    assert second.wait() == 0, second.stderr[-4000:]
    assert start_line(second.stderr)[0] == len(done)
    assert digests(dst, pair.dst_bucket) == expected(objects)
