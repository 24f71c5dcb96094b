"""Stand-in for `skymigrate run <migration.yaml> --no-tty --events <path>` while that command is missing.

Does what the standalone runner does, with the product's own parts: list and plan (planner.write_plan),
start one agent process per node, and every 0.5 s turn the heartbeats into the status the operator would
show (core.status.progress), appending one JSON event per tick:
{"t", "elapsed", "bytes_done", "bytes_total", "objects_done", "objects_total", "speed_bps", "eta_s"}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from skymigrate.core.credentials import resolve_local
from skymigrate.core.plan import RunConfig, progress_path
from skymigrate.core.progress import NodeHeartbeat
from skymigrate.core.s3 import make_client
from skymigrate.core.spec import load_manifest
from skymigrate.core.statestore import LocalStateStore
from skymigrate.operator.planner import list_source, write_plan

TICK_S = 0.5


def _heartbeat(store: LocalStateStore, rank: int) -> NodeHeartbeat | None:
    raw = store.get(progress_path(rank))
    return NodeHeartbeat.model_validate_json(raw) if raw else None


def _eta(views: list[Any], now: float, phase: str) -> float | None:
    from skymigrate.core.eta import cluster_eta
    from skymigrate.core.status import node_eta

    if phase != "Running":
        return 0.0 if phase == "Succeeded" else None
    if not all(v.heartbeat and v.heartbeat.objects_total for v in views):
        return None  # a node that has not loaded its shard yet would read as "nothing left"
    return cluster_eta(node_eta(v, now) for v in views)


def _event(store: LocalStateStore, plan: Any, nodes: int, started: float, phase: str) -> dict[str, Any]:
    from skymigrate.core.status import NodeView, progress

    now = time.time()
    hbs = [_heartbeat(store, r) for r in range(nodes)]
    views = [NodeView(r, hb.phase if hb else "Pending", hb) for r, hb in enumerate(hbs)]
    st = progress(phase, plan, views, started, now)  # type: ignore[arg-type]
    return {
        "t": now,
        "phase": phase,
        "elapsed": now - started,
        "bytes_done": st["bytes"]["done"],
        "bytes_total": st["bytes"]["total"],
        "bytes_in_flight": sum(h.bytes_in_flight for h in hbs if h),
        "objects_done": st["objects"]["done"],
        "objects_total": st["objects"]["total"],
        "speed_bps": st["speed"]["bytesPerSecond"],
        # The status rounds to whole seconds; the same formula unrounded, for short benchmark runs.
        "eta_s": _eta(views, now, phase),
        "status_bytes": len(json.dumps(st)),
        "heartbeat_bytes": max((len(h.model_dump_json()) for h in hbs if h), default=0),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.skydriver")
    p.add_argument("manifest")
    p.add_argument("--events", required=True)
    args = p.parse_args(argv)
    started = time.time()
    meta, spec = load_manifest(yaml.safe_load(Path(args.manifest).read_text()))
    src, tgt = resolve_local(spec.source.credentials, "source"), resolve_local(spec.target.credentials, "target")
    store = LocalStateStore(Path(spec.state_store.url.removeprefix("file://")))
    client = make_client(spec.source.endpoint, src, spec.source.region)
    cfg = RunConfig(name=meta["name"], uid=uuid.uuid4().hex, spec=spec)
    plan = write_plan(store, cfg, list_source(client, spec.source.bucket, spec.source.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYMIGRATE_", "AWS_"))}
    env.update(src.to_env("source"))
    env.update(tgt.to_env("target"))
    agent = [sys.executable, "-m", "skymigrate.agent.cli", "--state", spec.state_store.url, "--metrics-port", "-1"]
    procs = [
        subprocess.Popen([*agent, "--rank", str(r), "--nodes", str(spec.nodes)], env=env) for r in range(spec.nodes)
    ]
    with Path(args.events).open("a", encoding="utf-8") as ev:
        while any(pr.poll() is None for pr in procs):
            ev.write(json.dumps(_event(store, plan, spec.nodes, started, "Running")) + "\n")
            ev.flush()
            time.sleep(TICK_S)
        rcs = [pr.wait() for pr in procs]
        phase = "Succeeded" if not any(rcs) else "Failed"
        ev.write(json.dumps(_event(store, plan, spec.nodes, started, phase)) + "\n")
    return max(rcs)


if __name__ == "__main__":
    sys.exit(main())
