"""Objects above the small-object threshold: streamed through `s5cmd cat | relay | s5cmd pipe` (or copied
in-process when s5cmd cannot address the key), uploaded in parts of the source's own part size so the
target's ETag equals the source's."""

from __future__ import annotations

from tests.conftest import Pair
from tests.support.agentkit import MiB, etag, failed, heartbeat, open_uploads, put_multipart
from tests.support.data import digests, expected, payload


def test_large_objects_keep_their_multipart_etag(pair: Pair) -> None:
    src = pair.src.client()
    objects = {
        "big/multipart-8MiB-parts.bin": payload("mp8", 37 * MiB),  # 5 parts of 8 MiB, the last one 5 MiB
        "big/multipart-5MiB-parts.bin": payload("mp5", 11 * MiB + 123),  # 3 parts, uneven tail
        "big/dir-marker-with-data/": payload("mpdir", 11 * MiB),  # trailing '/': the in-process path
        "big/single-part.bin": payload("sp", 3 * MiB + 7),  # above the threshold, uploaded in one PUT
        "small/a.txt": payload("a", 1000),
    }
    put_multipart(
        src, pair.src_bucket, "big/multipart-8MiB-parts.bin", objects["big/multipart-8MiB-parts.bin"], 8 * MiB
    )
    put_multipart(
        src, pair.src_bucket, "big/multipart-5MiB-parts.bin", objects["big/multipart-5MiB-parts.bin"], 5 * MiB
    )
    put_multipart(src, pair.src_bucket, "big/dir-marker-with-data/", objects["big/dir-marker-with-data/"], 6 * MiB)
    for k in ("big/single-part.bin", "small/a.txt"):
        src.put_object(Bucket=pair.src_bucket, Key=k, Body=objects[k])
    src_etags = {k: etag(src, pair.src_bucket, k) for k in objects}
    assert src_etags["big/multipart-8MiB-parts.bin"].endswith("-5")

    pair.plan(pair.spec(concurrency=4, transfer={"smallObjectThreshold": MiB}))
    r = pair.agent(extra=("--debug",))
    assert r.returncode == 0, r.stderr[-4000:]
    assert failed(pair) == []
    dst = pair.dst.client()
    assert digests(dst, pair.dst_bucket) == expected(objects)
    for k in ("big/multipart-8MiB-parts.bin", "big/multipart-5MiB-parts.bin", "big/dir-marker-with-data/"):
        assert etag(dst, pair.dst_bucket, k) == src_etags[k], k  # like-with-like part size
    assert etag(dst, pair.dst_bucket, "big/single-part.bin") == src_etags["big/single-part.bin"]  # one PUT
    assert open_uploads(dst, pair.dst_bucket) == []
    # The streamed path really was used for the large addressable objects: multipart sources of known part
    # size through the counting relay (the servers' ETags check the content), the single-part one hashed.
    streamed = {line.split("/", 3)[3].split(" ")[0]: line for line in r.stderr.splitlines() if "Streaming:" in line}
    assert set(streamed) == {"big/multipart-8MiB-parts.bin", "big/multipart-5MiB-parts.bin", "big/single-part.bin"}
    assert "| splice |" in streamed["big/multipart-8MiB-parts.bin"]
    assert "| splice |" in streamed["big/multipart-5MiB-parts.bin"]
    assert "| md5 relay |" in streamed["big/single-part.bin"]
    hb = heartbeat(pair)
    assert hb["objects_done"] == len(objects) and hb["bytes_done"] == sum(map(len, objects.values()))
