"""One command for the whole comparison: `python -m bench` (see bench/README.md).

Starts two Go S3 servers, then per workload: generate it from the seed, upload it to the source, run
every contender into a fresh target bucket, verify the target byte for byte, drop it. Writes
bench/results/<timestamp>.{md,json,png} and copies them to latest.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from skymigrate.agent.s5cmd import binary as s5cmd_binary

from bench import contenders, etaq, report, verify
from bench.servers import REPO, two_servers
from bench.workloads import NAMES, Content, build, materialize

RESULTS = REPO / "bench" / "results"
QUICK_SCALE = 0.05
QUICK_PLAN_KEYS = 100_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help=f"scale {QUICK_SCALE}, plan {QUICK_PLAN_KEYS:,} keys (~2 min)")
    p.add_argument(
        "--scale", type=float, default=None, help="shrink workloads (1.0 = full size, ~5 GB moved per contender)"
    )
    p.add_argument("--workloads", default=",".join(NAMES), help="subset, e.g. a,b")
    p.add_argument("--contenders", default=",".join(contenders.CONTENDERS), help="subset, e.g. limit,skymigrate-1n")
    p.add_argument("--seed", type=int, default=1, help="data generator seed")
    p.add_argument("--plan-keys", type=int, default=None, help="keys for the planning-scale check (0 skips it)")
    p.add_argument("--data-dir", default="/dev/shm/skymigrate-bench", help="server data + RAM-disk staging (tmpfs)")
    p.add_argument("--work-dir", default=None, help="logs and state stores (default: a new dir under /tmp)")
    p.add_argument("--part-mib", type=int, default=8, help="part size of the source's multipart uploads (8 = AWS CLI)")
    p.add_argument("--sky-command", choices=("auto", "cli", "direct"), default="auto",
                   help="cli = `skymigrate run`; direct = bench.skydriver (plan + agents); auto = cli if present")  # fmt: skip
    p.add_argument("--transfer", default="{}", help='spec.transfer overrides as JSON, e.g. {"batchMaxObjects": 2000}')
    p.add_argument("--concurrency", type=int, default=None, help="spec.concurrency override (default 4 // nodes)")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender; the fastest verified one is kept")
    p.add_argument(
        "--nice", type=int, default=0, help="scheduling priority for the whole run (e.g. -10 on a shared box)"
    )
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--name", default=None, help="results file stem (default: a timestamp)")
    return p.parse_args(argv)


def environment(args: argparse.Namespace, data_dir: Path, sky_command: str) -> dict[str, Any]:
    def version(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout.split("\n")[0]
        except OSError:
            return "?"

    from tests.support.tools import tool_path

    model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    fs = subprocess.run(["df", "--output=fstype", str(data_dir)], capture_output=True, text=True, check=False)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg_at_start": os.getloadavg(),
        "nice": args.nice,
        "python": platform.python_version(),
        "s5cmd": version([s5cmd_binary(), "version"]),
        "rclone": version([contenders._python_bin("rclone"), "version"]),
        "versitygw": version([str(tool_path("versitygw")), "--version"]) or "versitygw",
        "data_dir": str(data_dir),
        "data_fs": fs.stdout.split()[-1] if fs.stdout.split() else "?",
        "skymigrate_command": sky_command,
        "scale": args.scale,
        "seed": args.seed,
        "part_mib": args.part_mib,
        "transfer_overrides": json.loads(args.transfer),
        "concurrency_override": args.concurrency,
        "parallelism": {
            "objects_in_flight": contenders.PARALLEL,
            "parts_per_object": contenders.PART_CONCURRENCY,
            "small_object_workers": contenders.SMALL_WORKERS,
        },
    }


def scale_check(keys: int) -> dict[str, Any]:
    print(f"[bench] planning a {keys:,}-key listing", flush=True)
    r = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--keys", str(keys)],
        capture_output=True, text=True, cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def upload(side: Any, bucket: str, stage: Path, part_mib: int) -> None:
    subprocess.run(
        [s5cmd_binary(), "--endpoint-url", side.server.endpoint_url, "--numworkers", "64",
         "cp", "-p", str(part_mib), f"{stage}/*", f"s3://{bucket}/"],
        env=side.s5cmd_env(), check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def run_workload(name: str, args: argparse.Namespace, src: Any, dst: Any, shm: Path, work: Path,
                 content: Content, sky_command: str) -> dict[str, Any]:  # fmt: skip
    w = build(name, args.scale, args.seed)
    print(f"[bench] workload {name}: {w.title}, {w.count} objects, {w.total_bytes / 1e6:.0f} MB", flush=True)
    stage = shm / f"stage-{name}"
    t0 = time.monotonic()
    expected = materialize(w, content, stage)
    src_bucket = f"src-{name}-{args.seed}"
    src.create(src_bucket)
    upload(src, src_bucket, stage, args.part_mib)
    shutil.rmtree(stage, ignore_errors=True)
    print(f"[bench]   generated and uploaded in {time.monotonic() - t0:.1f}s", flush=True)
    runs: dict[str, Any] = {}
    try:
        for cname in args.contenders.split(","):
            best: dict[str, Any] | None = None
            for i in range(args.repeat):
                dst_bucket = f"dst-{name}-{cname}-{i}".replace("_", "-")
                dst.create(dst_bucket)
                jw = work / name / f"{cname}-{i}"
                jw.mkdir(parents=True, exist_ok=True)
                job = contenders.Job(
                    w, src, dst, src_bucket, dst_bucket, jw, shm, args.part_mib, sky_command,
                    json.loads(args.transfer), args.concurrency,
                )  # fmt: skip
                res = contenders.CONTENDERS[cname](job)
                problems = verify.check(dst, dst_bucket, expected, shm)
                dst.drop(dst_bucket)
                u = res.usage
                ok = u.rc == 0 and not problems
                one = {
                    "wall_s": round(u.wall_s, 3),
                    "started_at": u.started_at,
                    "ended_at": u.ended_at,
                    "mb_s": round(w.total_bytes / u.wall_s / 1e6, 1),
                    "objects_s": round(w.count / u.wall_s, 1),
                    "peak_rss_mb": round(u.peak_rss / 1e6, 1),
                    "cpu_s": round(u.cpu_s, 2),
                    "server_cpu_s": round(u.server_cpu_s, 2),
                    "cpu_by_kind": u.cpu_by_kind,
                    "rss_mb_by_kind": {k: round(v / 1e6) for k, v in u.rss_by_kind.items()},
                    "rc": u.rc,
                    "verified": ok,
                    "problems": problems[:10],
                    "problem_count": len(problems),
                    "notes": res.notes,
                    "logs": str(jw),
                }
                if res.events:
                    one["eta"] = etaq.quality(res.events, u.started_at, u.ended_at)
                    one["events"] = len(res.events)
                print(
                    f"[bench]   {cname:<14} {u.wall_s:7.2f}s {one['mb_s']:8.1f} MB/s {one['objects_s']:8.1f} obj/s "
                    f"rss {one['peak_rss_mb']:6.0f} MB cpu {u.cpu_s:6.1f}s srv {u.server_cpu_s:5.1f}s "
                    f"{'verified' if ok else f'FAILED rc={u.rc} {problems[:2]}'}",
                    flush=True,
                )
                if best is None or (ok and (not best["verified"] or one["wall_s"] < best["wall_s"])):
                    best = one
            runs[cname] = best
    finally:
        src.drop(src_bucket)
    return {"title": w.title, "objects": w.count, "bytes": w.total_bytes, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else 1.0
    if args.plan_keys is None:
        args.plan_keys = QUICK_PLAN_KEYS if args.quick else 1_000_000
    unknown = set(args.contenders.split(",")) - contenders.CONTENDERS.keys()
    if unknown:
        sys.exit(f"unknown contenders {sorted(unknown)}; known: {', '.join(contenders.CONTENDERS)}")
    if args.nice:
        os.nice(args.nice)  # inherited by the servers and every contender alike
    sky_command = args.sky_command
    if sky_command == "auto":
        sky_command = "cli" if contenders.sky_cli_available() else "direct"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data_dir = Path(args.data_dir) / stamp
    work = Path(args.work_dir) if args.work_dir else Path(f"/tmp/skymigrate-bench-{stamp}")
    work.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": stamp, "env": environment(args, data_dir, sky_command), "workloads": {}}
    print(f"[bench] logs and state stores: {work}; server data: {data_dir}", flush=True)
    t0 = time.monotonic()
    try:
        if args.plan_keys:
            results["scale"] = scale_check(args.plan_keys)
        content = Content(args.seed)
        with two_servers(data_dir / "servers") as (src, dst):
            shm = data_dir / "scratch"
            shm.mkdir(parents=True, exist_ok=True)
            for name in args.workloads.split(","):
                results["workloads"][name] = run_workload(name, args, src, dst, shm, work, content, sky_command)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    results["total_s"] = round(time.monotonic() - t0, 1)
    results["env"]["loadavg_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or stamp
    paths = report.write(results, out, stem)
    for p in paths:
        shutil.copyfile(p, out / f"latest{p.suffix}")
    print((out / f"{stem}.md").read_text())
    print(f"[bench] wrote {', '.join(str(p) for p in paths)} (and latest.*) in {results['total_s']:.0f}s")
    return 0 if all(r["verified"] for w in results["workloads"].values() for r in w["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
