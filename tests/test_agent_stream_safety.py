"""A streamed large object must never complete in the target unless it is the whole source object.

The stream relay counts bytes (with splice, when the servers' ETags can vouch for the content) and keeps
the upload's stdin open until the download has exited cleanly with exactly the expected bytes of the
object that was planned. These tests break the download for real in the middle of a stream: the source
link dies, or the source object is replaced. The target bucket is versioned, so every upload that ever
completed leaves a version behind, even one the agent deleted afterwards: the versions prove what the
target ever showed as complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Pair
from tests.support.agentkit import MiB, failed, open_uploads, put_multipart, start_agent, wait_for
from tests.support.corrupt import corrupting_relay
from tests.support.cutlink import cuttable
from tests.support.data import digests, expected, payload

# Slow enough that the stream is still running when the test strikes (24 MiB at 4 MB/s: ~6 s).
SOURCE_LINK_BYTES_PER_SECOND = 4_000_000


def versioned_target(pair: Pair) -> Any:
    dst = pair.dst.client()
    dst.put_bucket_versioning(Bucket=pair.dst_bucket, VersioningConfiguration={"Status": "Enabled"})
    return dst


def completed_versions(dst: Any, bucket: str, key: str) -> list[bytes]:
    """The bytes of every version of ``key`` that an upload ever completed (delete markers aside)."""
    versions = dst.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [
        dst.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read()
        for v in versions
        if v["Key"] == key
    ]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_source_link_dying_mid_stream_completes_nothing(pair: Pair, tmp_path: Path) -> None:
    src = pair.src.client()
    big = payload("cut", 24 * MiB)
    put_multipart(src, pair.src_bucket, "big.bin", big, 5 * MiB)  # multipart, known part size: the splice path
    dst = versioned_target(pair)
    with cuttable(port_of(pair.src.endpoint_url), SOURCE_LINK_BYTES_PER_SECOND) as link:
        spec = pair.spec(
            source={"endpoint": f"http://127.0.0.1:{link.port}"},
            concurrency=1,
            transfer={"smallObjectThreshold": MiB},
            retry={"attempts": 1},
        )
        pair.plan(spec)
        run = start_agent(pair, tmp_path / "logs", extra=("--debug",))
        try:
            # The upload opens once a whole 5 MiB part has gone through: the stream is well under way.
            wait_for("a multipart upload in the target", lambda: bool(open_uploads(dst, pair.dst_bucket)), 120, run)
            link.cut()  # the source dies: open connections end early, new ones are refused
            run.wait(timeout=240)
        finally:
            run.kill()
    assert "| splice |" in run.stderr  # the counting relay, not the hashing one
    assert [f["key"] for f in failed(pair)] == ["big.bin"]
    assert completed_versions(dst, pair.dst_bucket, "big.bin") == []  # nothing ever completed
    assert open_uploads(dst, pair.dst_bucket) == []  # and the started upload was aborted


def test_connections_dropped_mid_stream_never_complete_a_short_object(pair: Pair, tmp_path: Path) -> None:
    """The download is retried inside s5cmd after a dropped connection; however it ends, what reached the
    upload before the drop must not complete as an object unless it is all of the source."""
    src = pair.src.client()
    big = payload("blip", 24 * MiB)
    put_multipart(src, pair.src_bucket, "big.bin", big, 5 * MiB)
    dst = versioned_target(pair)
    with cuttable(port_of(pair.src.endpoint_url), SOURCE_LINK_BYTES_PER_SECOND) as link:
        spec = pair.spec(
            source={"endpoint": f"http://127.0.0.1:{link.port}"},
            concurrency=1,
            transfer={"smallObjectThreshold": MiB},
            retry={"attempts": 3, "initialBackoffSeconds": 0.1, "maxBackoffSeconds": 0.2},
        )
        pair.plan(spec)
        run = start_agent(pair, tmp_path / "logs", extra=("--debug",))
        try:
            wait_for("a multipart upload in the target", lambda: bool(open_uploads(dst, pair.dst_bucket)), 120, run)
            link.drop()
            assert run.wait(timeout=240) == 0, run.stderr[-4000:]
        finally:
            run.kill()
    assert completed_versions(dst, pair.dst_bucket, "big.bin") == [big]  # only ever the whole object
    assert "| splice |" in run.stderr
    assert failed(pair) == []
    assert open_uploads(dst, pair.dst_bucket) == []


def test_source_replaced_mid_stream_never_completes_the_old_read(pair: Pair, tmp_path: Path) -> None:
    src = pair.src.client()
    old = payload("old", 24 * MiB)
    new = payload("new", 21 * MiB + 77)  # another size and content: the planned object is gone
    put_multipart(src, pair.src_bucket, "big.bin", old, 5 * MiB)
    dst = versioned_target(pair)
    with cuttable(port_of(pair.src.endpoint_url), SOURCE_LINK_BYTES_PER_SECOND) as link:
        spec = pair.spec(
            source={"endpoint": f"http://127.0.0.1:{link.port}"},
            concurrency=1,
            transfer={"smallObjectThreshold": MiB},
            retry={"attempts": 3, "initialBackoffSeconds": 0.1, "maxBackoffSeconds": 0.2},
        )
        pair.plan(spec)
        run = start_agent(pair, tmp_path / "logs", extra=("--debug",))
        try:
            wait_for("a multipart upload in the target", lambda: bool(open_uploads(dst, pair.dst_bucket)), 120, run)
            put_multipart(src, pair.src_bucket, "big.bin", new, 5 * MiB)  # directly, not through the slow link
            assert run.wait(timeout=240) == 0, run.stderr[-4000:]
        finally:
            run.kill()
    # Only the retry, which read the new object, ever completed: the first read never became an object.
    assert completed_versions(dst, pair.dst_bucket, "big.bin") == [new]
    assert "| splice |" in run.stderr
    assert "source object changed during the copy" in run.stderr  # what stopped the first attempt
    assert failed(pair) == []
    assert open_uploads(dst, pair.dst_bucket) == []


def test_bytes_damaged_on_the_way_never_complete(pair: Pair, tmp_path: Path) -> None:
    """Bit rot between source and agent, in a middle part (the target server's MD5s of the parts catch it)
    and in the last part (the relay's own MD5 of it does), before the upload may complete."""
    src = pair.src.client()
    mark, rot = b"<<intact-bytes>>", b"<<intact-bytez>>"
    objects = {
        "rot/middle.bin": payload("m1", 7 * MiB) + mark + payload("m2", 9 * MiB),
        "rot/last.bin": payload("l1", 16 * MiB) + mark + payload("l2", 1000),
    }
    for k, v in objects.items():
        put_multipart(src, pair.src_bucket, k, v, 5 * MiB)
    dst = versioned_target(pair)
    with corrupting_relay(pair.src.endpoint_url, mark, rot) as relayed:
        spec = pair.spec(
            source={"endpoint": relayed},
            transfer={"smallObjectThreshold": MiB},
            retry={"attempts": 2, "initialBackoffSeconds": 0.05, "maxBackoffSeconds": 0.1},
        )
        pair.plan(spec)
        run = start_agent(pair, tmp_path / "logs", extra=("--debug",))
        assert run.wait(timeout=240) == 3, run.stderr[-3000:]  # 3: some objects failed
    for k in objects:
        assert completed_versions(dst, pair.dst_bucket, k) == [], k  # not even for a moment
    assert run.stderr.count("| splice |") == 4
    assert sorted(f["key"] for f in failed(pair)) == sorted(objects)
    assert all("does not match" in f["reason"] and f["stage"] == "download" for f in failed(pair)), failed(pair)
    assert open_uploads(dst, pair.dst_bucket) == []


def test_without_checksums_every_stream_is_counted_not_hashed(pair: Pair) -> None:
    src = pair.src.client()
    objects = {"mp.bin": payload("mp", 12 * MiB + 5), "sp.bin": payload("sp", 3 * MiB + 1)}
    put_multipart(src, pair.src_bucket, "mp.bin", objects["mp.bin"], 5 * MiB)
    src.put_object(Bucket=pair.src_bucket, Key="sp.bin", Body=objects["sp.bin"])
    pair.plan(pair.spec(transfer={"smallObjectThreshold": MiB, "verifyChecksum": False}))
    r = pair.agent(extra=("--debug",))
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stderr.count("| splice |") == 2 and "| md5 relay |" not in r.stderr
    assert failed(pair) == []
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(objects)


def test_splice_declines_descriptors_it_cannot_join_before_moving_anything(tmp_path: Path) -> None:
    """Where splice(2) refuses (here: two regular files, neither a pipe), the relay falls back to copying."""
    from skymigrate.agent.stream import _relay_splice

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 1000)
    with a.open("rb") as src, b.open("wb") as dst:
        assert _relay_splice(src.fileno(), dst.fileno(), lambda n: None, 1000) is None
    assert b.read_bytes() == b""
