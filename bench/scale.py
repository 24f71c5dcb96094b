"""Planning at scale: feed a generated N-key listing to planner.write_plan and report time and peak memory,
then check that what the operator reads live (heartbeats, status, plan.json) does not grow with keys.

Runs in its own process (`python -m bench.scale --keys 1000000`) so its peak RSS is its own; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from skymigrate.core.plan import CONFIG, PLAN, RunConfig, shard_path
from skymigrate.core.progress import NodeHeartbeat
from skymigrate.core.spec import MigrationSpec
from skymigrate.core.statestore import LocalStateStore
from skymigrate.operator.planner import write_plan

MASK128 = (1 << 128) - 1


def listing(n: int) -> Iterator[tuple[str, int, str, datetime | None]]:
    """Realistic keys (nested prefixes, ~40 chars), sizes spread over 0..4 MiB, MD5-shaped ETags."""
    for i in range(n):
        yield (
            f"dataset/part-{i % 997:04d}/shard-{i // 997:06d}/obj-{i:09d}.bin",
            (i * 2654435761) % (4 << 20),
            f"{(i * 0x9E3779B97F4A7C15) & MASK128:032x}",
            None,
        )


def _rss_now() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def _status_bytes(plan: Any, nodes: int, per_node_objects: int, per_node_bytes: int) -> tuple[int, int]:
    """Sizes of one heartbeat and of the whole status for a shard of this many objects, half done."""
    from skymigrate.core.status import NodeView, progress

    now = time.time()
    half = {
        "objects_total": per_node_objects,
        "objects_done": per_node_objects // 2,
        "bytes_total": per_node_bytes,
        "bytes_done": per_node_bytes // 2,
    }
    hbs = [
        NodeHeartbeat.model_validate(
            {"rank": r, "started_at": now - 100, "updated_at": now, "speed_bps": 1.23e8, "eta_s": 4567.8, **half}
        )
        for r in range(nodes)
    ]
    st = progress("Running", plan, [NodeView(h.rank, "Running", h) for h in hbs], now - 100, now)
    return len(hbs[0].model_dump_json()), len(json.dumps(st))


def plan_once(keys: int, nodes: int) -> dict[str, Any]:
    spec = MigrationSpec.model_validate(
        {"source": {"endpoint": "http://127.0.0.1:1", "bucket": "src-bucket"},
         "target": {"endpoint": "http://127.0.0.1:2", "bucket": "dst-bucket"}, "nodes": nodes}
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as d:
        store = LocalStateStore(Path(d))
        base_rss = _rss_now()
        t0 = time.perf_counter()
        plan = write_plan(store, RunConfig(name="scale", uid="u", spec=spec), listing(keys))
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        sizes = {
            "plan_json": len(store.get(PLAN) or b""),
            "config_json": len(store.get(CONFIG) or b""),
            "shards_total": sum(len(store.get(shard_path(r)) or b"") for r in range(nodes)),
        }
    hb, status = _status_bytes(plan, nodes, plan.objects_total // nodes, plan.bytes_total // nodes)
    return {
        "keys": keys,
        "nodes": nodes,
        "planning_s": round(seconds, 2),
        "keys_per_s": round(keys / seconds),
        "peak_rss_bytes": peak,
        "rss_before_bytes": base_rss,
        "imbalance": max(s.bytes for s in plan.shards) / (plan.bytes_total / nodes) - 1,
        "sizes": {**sizes, "heartbeat_json": hb, "status_json": status},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale")
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--nodes", type=int, default=8)
    a = p.parse_args(argv)
    big = plan_once(a.keys, a.nodes)  # first, so the peak RSS is the big run's
    small = plan_once(1000, a.nodes)
    growth = {
        k: big["sizes"][k] - small["sizes"][k] for k in ("plan_json", "config_json", "heartbeat_json", "status_json")
    }
    json.dump({"big": big, "small": small, "growth_bytes": growth}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
