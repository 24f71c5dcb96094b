"""Debug mode (spec.debug or --debug) prints the seed's diagnostics; without it they stay out of the log."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Pair
from tests.support.agentkit import MiB, failed
from tests.support.data import digests, expected, payload, put_all


@pytest.mark.parametrize("small", ["direct", "s5cmd"])
def test_debug_mode_prints_the_seed_diagnostics(pair: Pair, small: str) -> None:
    src = pair.src.client()
    objects = {
        "d/small-1.txt": payload("d1", 1500),
        "d/small-2.txt": payload("d2", 2500),
        "d/large.bin": payload("dl", 2 * MiB),
        "d/marker/": payload("dm", 10),
        "d/gone.txt": payload("dg", 100),
    }
    put_all(src, pair.src_bucket, objects)
    pair.plan(pair.spec(debug=True, transfer={"smallObjectThreshold": MiB}, retry={"attempts": 2}))
    src.delete_object(Bucket=pair.src_bucket, Key="d/gone.txt")
    r = pair.agent(extra=("--small-objects", small))
    assert r.returncode == 3, r.stderr[-3000:]
    log = r.stderr
    assert "Debug mode: true" in log
    for k, v in objects.items():
        if k == "d/gone.txt":
            continue
        assert f"🔍 Processing: {k} ({len(v)} bytes)" in log
        assert f"   Source: s3://{pair.src_bucket}/{k}" in log and f"   Target: s3://{pair.dst_bucket}/{k}" in log
    assert re.search(r"💾 Resource Usage:\n   RAM disk: \d+% used \([\d.]+G available\)\n   Root disk: \d+% used", log)
    assert "   ✅ Object exists in source" in log
    # Per-object speed lines, one per path.
    if small == "s5cmd":
        assert re.search(r"✅ d/small-1\.txt \(1500 bytes\) - Batch: [\d.]+ MB/s \(batch average\)", log)
        assert re.search(r"   Batch download: 2/2 objects, [\d.]+ MB/s", log)
        assert re.search(r"   Batch upload: 2/2 objects, [\d.]+ MB/s", log)
    else:
        assert re.search(
            r"✅ d/small-1\.txt \(1500 bytes\) - Direct: [\d.]+ MB/s\n   Download: [\d.]+ MB/s, Upload: [\d.]+ MB/s",
            log,
        )
    assert re.search(
        rf"✅ d/large\.bin \({2 * MiB} bytes\) - Stream: [\d.]+ MB/s\n   Download: [\d.]+ MB/s, Upload: [\d.]+ MB/s, "
        r"Average: [\d.]+ MB/s",
        log,
    )
    marker = "Inprocess" if small == "s5cmd" else "Direct"  # a trailing '/' is fine for boto3, not s5cmd
    assert re.search(rf"✅ d/marker/ \(10 bytes\) - {marker}: [\d.]+ MB/s\n   Download: ", log)
    assert "   Streaming: s5cmd cat s3://" in log
    # Failure diagnostics: the stage, what was said, the disks.
    assert "❌ Download failed: d/gone.txt (after 1 attempt): source object no longer exists" in log
    diag = log[log.index("❌ Download failed: d/gone.txt") :]
    assert "   Debug: check source bucket permissions, object existence, and connectivity" in diag
    assert f"   Stage: download ({'batch' if small == 's5cmd' else 'direct'}), attempt 1/2, permanent" in diag
    assert "   Output: source object no longer exists" in diag
    assert "💾 Resource Usage:" in diag
    assert [f["key"] for f in failed(pair)] == ["d/gone.txt"]
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(
        {k: v for k, v in objects.items() if k != "d/gone.txt"}
    )


def test_without_debug_mode_the_log_stays_short(pair: Pair) -> None:
    objects = {f"q/{i}": payload(f"q{i}", 100 + i) for i in range(10)}
    put_all(pair.src.client(), pair.src_bucket, objects)
    pair.plan(pair.spec())
    r = pair.agent()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Debug mode: false" in r.stderr
    for noisy in ("🔍 Processing", "Resource Usage", "MB/s\n", "Batch download"):
        assert noisy not in r.stderr
    assert "📊 Node 0 Progress Report:" in r.stderr  # the final report is always there
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(objects)
