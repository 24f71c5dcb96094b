"""ETA quality on the demo data: `python -m bench.demo_eta [--scale 2] [--nodes 2]`.

Runs `skymigrate demo --no-tty --events ...` (the README's first command, moto servers), then scores the
ETA the product showed at 25/50/75 % progress and wall time against when the migration really ended,
next to the seed's naive lifetime average on the same samples. Results go to
bench/results/demo-eta-<timestamp>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import etaq

RESULTS = Path(__file__).parent / "results"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f} %"


def table(q: dict[str, Any]) -> list[str]:
    rows = [
        "| by | point | progress | elapsed s | actual remaining s | product ETA s | product error | naive error |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for where, label in (("points", "progress"), ("time_points", "wall time")):
        for point, p in q[where].items():
            rows.append(
                f"| {label} | {point} | {p['progress'] * 100:.0f} % | {p['elapsed_s']:.1f} | "
                f"{p['actual_remaining_s']:.1f} | {p['product_eta_s']:.0f} | {_pct(p['product_error'])} | "
                f"{_pct(p['naive_error'])} |"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.demo_eta", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=2.0, help="demo data volume (default 2, the demo's own)")
    ap.add_argument("--nodes", type=int, default=2, help="node agents (default 2, the demo's own)")
    args = ap.parse_args(argv)
    exe = shutil.which("skymigrate") or str(Path(sys.executable).with_name("skymigrate"))
    with tempfile.TemporaryDirectory(prefix="skymigrate-demo-eta-") as tmp:
        events = Path(tmp) / "events.jsonl"
        cmd = [exe, "demo", "--no-tty", "--events", str(events), "--scale", str(args.scale)]
        r = subprocess.run([*cmd, "--nodes", str(args.nodes)], check=False)
        if r.returncode != 0:
            print(f"skymigrate demo exited {r.returncode}", file=sys.stderr)
            return 1
        evs = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    if not evs:
        print("the demo wrote no status events", file=sys.stderr)
        return 1
    # The migration's own clock: the demo fills the source first, which is not part of the run.
    started_at = evs[0]["t"] - (evs[0].get("elapsed") or 0)
    ended_at = evs[-1]["t"]
    q = etaq.quality(evs, started_at, ended_at)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    head = [
        f"# ETA quality on the demo data — {stamp}",
        "",
        f"`skymigrate demo --scale {args.scale} --nodes {args.nodes}` (moto servers on loopback); migration "
        f"{ended_at - started_at:.1f} s, final phase {evs[-1].get('phase')}. Error = (predicted remaining - "
        "actual remaining) / actual remaining; progress = verified + in-flight bytes, as the product shows it; "
        "naive = the seed's lifetime bytes/elapsed of finished objects.",
        "",
    ]
    md = "\n".join([*head, *table(q), ""])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"demo-eta-{stamp}.md").write_text(md, encoding="utf-8")
    (RESULTS / f"demo-eta-{stamp}.json").write_text(json.dumps({"scale": args.scale, "nodes": args.nodes, **q}))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
