"""The node agent against two real S3 servers and the real s5cmd binary; every copy checked byte for byte."""

from __future__ import annotations

import json

from tests.conftest import Pair
from tests.support.data import digests, expected, payload, put_all


def test_copies_many_objects_of_distinct_sizes_byte_for_byte(pair: Pair) -> None:
    objects = {f"data/obj-{i:04d}.bin": payload(f"o{i}", (i * 7919) % 300_000) for i in range(300)}
    put_all(pair.src.client(), pair.src_bucket, objects)
    pair.plan(pair.spec(concurrency=4, transfer={"batchMaxObjects": 64}))
    r = pair.agent()
    assert r.returncode == 0, r.stderr[-3000:]
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(objects)
    hb = json.loads((pair.state_dir / "progress/0.json").read_text())
    assert hb["phase"] == "Succeeded"
    assert hb["objects_done"] == 300 and hb["objects_failed"] == 0
    assert hb["bytes_done"] == sum(map(len, objects.values()))
