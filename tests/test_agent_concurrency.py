"""Many objects of distinct sizes and contents over every copy path at once, with two nodes copying their
shards side by side into the same target."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Pair
from tests.support.agentkit import MiB, failed, heartbeat, open_uploads, put_multipart, start_agent
from tests.support.data import digests, expected, payload, put_all


def test_two_nodes_with_high_concurrency_copy_everything_exactly(pair: Pair, tmp_path: Path) -> None:
    src = pair.src.client()
    objects = {f"small/{i:04d}": payload(f"c{i}", (i * 7919) % 100_003) for i in range(240)}
    objects |= {f"markers/{i}/": payload(f"mk{i}", i * 11) for i in range(6)}  # in-process path
    put_all(src, pair.src_bucket, objects)
    for i in range(4):
        k = f"large/{i}.bin"
        objects[k] = payload(k, 5 * MiB + i * 777_777)
        put_multipart(src, pair.src_bucket, k, objects[k], 5 * MiB)
    spec = pair.spec(nodes=2, concurrency=6, transfer={"smallObjectThreshold": MiB, "batchMaxObjects": 16})
    pair.plan(spec)
    runs = [start_agent(pair, tmp_path / "logs", rank=r, nodes=2, tag=f"rank{r}") for r in (0, 1)]
    codes = [r.wait(300) for r in runs]
    assert codes == [0, 0], "\n".join(r.stderr[-2000:] for r in runs)
    dst = pair.dst.client()
    assert digests(dst, pair.dst_bucket) == expected(objects)
    assert open_uploads(dst, pair.dst_bucket) == []
    beats = [heartbeat(pair, r) for r in (0, 1)]
    assert sum(b["objects_total"] for b in beats) == len(objects)
    assert sum(b["bytes_done"] for b in beats) == sum(map(len, objects.values()))
    assert all(b["objects_done"] > 0 and b["phase"] == "Succeeded" for b in beats)  # both had work
    assert failed(pair, 0) == failed(pair, 1) == []
