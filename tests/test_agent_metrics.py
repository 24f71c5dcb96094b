"""The agent's /metrics, scraped over HTTP while it runs: Prometheus naming, labels, and counts that agree
with what was copied."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Pair
from tests.support.agentkit import MiB, heartbeat, put_multipart, scrape, start_agent, wait_for
from tests.support.data import digests, expected, payload, put_all

ALLOWED_LABELS = {"namespace", "migration", "node", "result", "operation", "method", "le"}


def values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def one(vals: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    got = [v for (n, ls), v in vals.items() if n == name and set(labels.items()) <= ls]
    assert len(got) == 1, (name, labels, got)
    return got[0]


def test_metrics_are_served_while_running_and_match_the_copy(pair: Pair, tmp_path: Path) -> None:
    src = pair.src.client()
    objects = {f"m/{i:03d}": payload(f"m{i}", 10_000 + 97 * i) for i in range(120)}
    put_all(src, pair.src_bucket, objects)
    objects["m/big.bin"] = payload("mb", 6 * MiB)
    put_multipart(src, pair.src_bucket, "m/big.bin", objects["m/big.bin"], 5 * MiB)
    present = {k: objects[k] for k in list(objects)[:10]}  # already identical in the target: skipped
    put_all(pair.dst.client(), pair.dst_bucket, present)
    pair.plan(pair.spec(concurrency=1, transfer={"smallObjectThreshold": MiB, "batchMaxObjects": 5}))
    gone = "m/119"
    src.delete_object(Bucket=pair.src_bucket, Key=gone)

    run = start_agent(pair, tmp_path / "logs", metrics_port=0, extra=("--metrics-linger", "60"))
    try:
        wait_for("metrics/0.json", lambda: (pair.state_dir / "metrics/0.json").exists(), 60, run)
        port = json.loads((pair.state_dir / "metrics/0.json").read_text())["port"]
        live: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

        def copying() -> bool:
            live.update(values(scrape(port)))
            return one(live, "skymigrate_node_up") == 1.0

        wait_for("the agent to report up", copying, 60, run)  # scraped while the shard is being copied
        assert one(live, "skymigrate_node_total_objects") == len(objects)
        assert one(live, "skymigrate_node_objects_total", result="copied") < len(objects) - len(present) - 1
        wait_for("the shard to finish", lambda: heartbeat(pair)["phase"] in ("Succeeded", "Failed"), 180, run)
        text = scrape(port)  # still served: --metrics-linger
    finally:
        run.proc.terminate()
        code = run.wait(30)
    assert code == 3, run.stderr[-3000:]  # one object vanished

    final = values(text)
    hb = heartbeat(pair)
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} >= {
        "skymigrate_node_bytes",
        "skymigrate_node_objects",
        "skymigrate_node_retries",
        "skymigrate_node_object_duration_seconds",
        "skymigrate_node_speed_bytes_per_second",
        "skymigrate_node_eta_seconds",
        "skymigrate_node_ramdisk_used_bytes",
        "skymigrate_node_ramdisk_capacity_bytes",
        "skymigrate_node_disk_used_bytes",
        "skymigrate_node_disk_capacity_bytes",
    }
    for f in families:
        if f.type == "counter":
            assert all(s.name.endswith("_total") for s in f.samples), f.name
        assert not f.name.endswith(("_ms", "_milliseconds", "_kb", "_mb", "_mib")), f.name  # base units
        for s in f.samples:
            assert set(s.labels) <= ALLOWED_LABELS, (f.name, s.labels)
            assert not any(k in v for v in s.labels.values() for k in objects), (f.name, s.labels)
            if f.name.startswith("skymigrate_node"):
                assert (s.labels["migration"], s.labels["node"]) == ("test", "0")
    copied = {k: v for k, v in objects.items() if k not in present and k != gone}
    assert one(final, "skymigrate_node_bytes_total", result="copied") == sum(map(len, copied.values()))
    assert one(final, "skymigrate_node_objects_total", result="copied") == len(copied)
    assert one(final, "skymigrate_node_bytes_total", result="skipped") == sum(map(len, present.values()))
    assert one(final, "skymigrate_node_objects_total", result="skipped") == len(present)
    assert one(final, "skymigrate_node_objects_total", result="failed") == 1
    assert one(final, "skymigrate_node_object_duration_seconds_count", method="direct") == len(copied) - 1
    assert one(final, "skymigrate_node_object_duration_seconds_count", method="stream") == 1
    assert one(final, "skymigrate_node_up") == 0.0
    assert one(final, "skymigrate_node_remaining_bytes") == 0.0
    assert one(final, "skymigrate_node_ramdisk_capacity_bytes") > 0
    assert hb["bytes_done"] == sum(map(len, copied.values())) + sum(map(len, present.values()))
    assert digests(pair.dst.client(), pair.dst_bucket) == expected({k: v for k, v in objects.items() if k != gone})
