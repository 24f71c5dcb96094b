"""Content-Type, Content-Encoding, Content-Disposition, Cache-Control and user metadata survive every copy
path: small objects direct (GET/PUT) or in `s5cmd run` batches, streams (`s5cmd cat | pipe`, single and
multipart) and the in-process path."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Pair
from tests.support.agentkit import MiB, failed, put_multipart
from tests.support.data import digests, expected, payload, put_all

HEADERS: dict[str, Any] = {
    "ContentType": "text/csv; charset=utf-8",
    "ContentEncoding": "gzip",
    "ContentDisposition": 'attachment; filename="report 2024, final.csv"',
    "CacheControl": "public, max-age=345600",
    "Metadata": {"owner": "ann", "note": 'a=b, c; d "q"', "mixed-case-key": "Value With Spaces"},
}
PLAIN: dict[str, Any] = {"ContentType": "application/x-custom"}  # no other headers: none may appear in the target


def _head(client: Any, bucket: str, key: str) -> dict[str, Any]:
    h = client.head_object(Bucket=bucket, Key=key)
    fields = ("ContentType", "ContentEncoding", "ContentDisposition", "CacheControl", "ContentLanguage", "Metadata")
    return {k: h.get(k) for k in fields if h.get(k)}


@pytest.mark.parametrize("path", ["direct", "s5cmd"])
def test_headers_and_user_metadata_are_preserved_on_every_path(pair: Pair, path: str) -> None:
    src = pair.src.client()
    small = {
        "batch/a.csv": payload("a", 2000),
        "batch/plain.bin": payload("p", 10),
        "inproc/dir-marker/": payload("d", 300),
        "lang/fr.txt": payload("fr", 400),
    }
    big = {
        "stream/single.csv": payload("s", 2 * MiB + 5),
        "stream/multipart.csv": payload("m", 11 * MiB),
        "inproc/big-marker/": payload("bm", 11 * MiB),
    }
    extra = {k: HEADERS for k in [*small, *big]}
    extra["batch/plain.bin"] = PLAIN
    extra["lang/fr.txt"] = {**HEADERS, "ContentLanguage": "fr-CA"}  # s5cmd cannot set it: in-process path
    put_all(src, pair.src_bucket, {k: small[k] for k in small}, extra=extra)
    src.put_object(Bucket=pair.src_bucket, Key="stream/single.csv", Body=big["stream/single.csv"], **HEADERS)
    for k in ("stream/multipart.csv", "inproc/big-marker/"):
        put_multipart(src, pair.src_bucket, k, big[k], 5 * MiB, **HEADERS)

    pair.plan(pair.spec(concurrency=4, transfer={"smallObjectThreshold": MiB}, target={"prefix": "copy/"}))
    r = pair.agent(extra=("--small-objects", path))
    assert r.returncode == 0, r.stderr[-4000:]
    assert failed(pair) == []
    objects = {**small, **big}
    dst = pair.dst.client()
    assert digests(dst, pair.dst_bucket, "copy/") == expected(objects)
    for k in objects:
        want = _head(src, pair.src_bucket, k)
        assert want["ContentType"] == extra[k]["ContentType"]  # the source really has what we set
        assert _head(dst, pair.dst_bucket, "copy/" + k) == want, k
