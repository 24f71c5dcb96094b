"""Any legal key is copied exactly, under a source prefix into a different target prefix and at the bucket root."""

from __future__ import annotations

import pytest

from tests.conftest import Pair
from tests.support.agentkit import failed, heartbeat
from tests.support.data import digests, expected, payload, put_all

AWKWARD = [
    "plain.txt",
    "with space.txt",
    "  two  leading spaces",
    "ünïcødé/日本語/файл.bin",
    "emoji-📦.dat",
    "plus+sign+1",
    "percent%20not-decoded%2F",
    "hash#fragment",
    "question?mark=1&x=2",
    "star*glob",
    "glob/*/all",
    "brackets[0]",
    "range[a-z]",
    "braces{a,b}",
    'double"quote',
    "single'quote",
    "back\\slash\\",
    "tilde~caret^pipe|",
    "semi;colon:comma,",
    "dollar$HOME`tick`",
    "/leading-slash",
    "double//slash",
    "a///triple",
    "dir/",
    "dir/sub/",
    "nonempty-trailing-slash/",
    "zero-byte",
    "zero/deep/byte",
    ".",
    "..",
    "x/../y",
]
SIZES = {"dir/": 0, "dir/sub/": 0, "zero-byte": 0, "zero/deep/byte": 0}


@pytest.mark.parametrize(
    ("src_prefix", "dst_prefix", "small"),
    [("in/", "out/put/", "direct"), ("in/", "out/put/", "s5cmd"), ("", "", "s5cmd")],
    ids=["prefixed-direct", "prefixed-s5cmd", "root-s5cmd"],
)
def test_awkward_keys_are_copied_exactly(pair: Pair, src_prefix: str, dst_prefix: str, small: str) -> None:
    objects = {k: payload(k, SIZES.get(k, 1000 + 37 * i)) for i, k in enumerate(AWKWARD)}
    src = pair.src.client()
    put_all(src, pair.src_bucket, objects, prefix=src_prefix)
    # A neighbour outside the source prefix must not be copied.
    if src_prefix:
        src.put_object(Bucket=pair.src_bucket, Key="outside/not-me", Body=b"x")
    spec = pair.spec(
        source={"prefix": src_prefix}, target={"prefix": dst_prefix}, concurrency=4, transfer={"batchMaxObjects": 8}
    )
    pair.plan(spec)
    r = pair.agent(extra=("--small-objects", small))
    assert r.returncode == 0, r.stderr[-4000:]
    assert failed(pair) == []
    assert digests(pair.dst.client(), pair.dst_bucket) == expected({dst_prefix + k: v for k, v in objects.items()})
    hb = heartbeat(pair)
    assert hb["objects_done"] == len(AWKWARD) and hb["objects_failed"] == 0
