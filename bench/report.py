"""Results as Markdown, JSON and a PNG (throughput per workload; the product's ETA against the real finish)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

SKY = ("skymigrate-1n", "skymigrate-2n", "skymigrate-1n-s5cmd")
# (compared with, minimum speed ratio, workloads it applies to)
TARGETS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("rclone", 1.2, ("a", "b", "c", "d")),
    ("seed", 5.0, ("a", "b")),
    ("limit", 0.85, ("c", "d")),
)
ETA_TARGET = 0.10
PLAN_MEMORY_TARGET = 512 * 10**6


def ratios(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """workload -> "skymigrate-1n/rclone" -> {ratio, target, met}; speed ratio = their time / our time."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for wname, w in results["workloads"].items():
        runs = w["runs"]
        for sky in SKY:
            mine = runs.get(sky)
            if not mine or not mine["verified"]:
                continue
            for other, target, applies in TARGETS:
                theirs = runs.get(other)
                if not theirs or not theirs["verified"]:
                    continue
                r = theirs["wall_s"] / mine["wall_s"]
                t = target if wname in applies else None
                out.setdefault(wname, {})[f"{sky}/{other}"] = {
                    "ratio": round(r, 3),
                    "target": t,
                    "met": None if t is None else r >= t,
                }
    return out


def _load(x: list[float] | None) -> str:
    return "/".join(f"{v:.1f}" for v in x) if x else "?"


def _nice(env: dict[str, Any]) -> str:
    return f", run at nice {env['nice']}" if env.get("nice") else ""


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _verdict(r: dict[str, Any]) -> str:
    return "yes" if r["verified"] else f"NO: {'; '.join(r['problems'][:2])} (rc {r['rc']})"


def _cpu_rows(results: dict[str, Any]) -> list[str]:
    """Where each contender's CPU went, by process kind (polled every 0.1 s: a lower bound)."""
    rows = []
    for wname, w in results["workloads"].items():
        for cname, r in w["runs"].items():
            kinds = r.get("cpu_by_kind") or {}
            top = ", ".join(f"{k.replace('?', '(short-lived)')} {v:.1f}" for k, v in list(kinds.items())[:4])
            rss = ", ".join(f"{k} {v}" for k, v in list((r.get("rss_mb_by_kind") or {}).items())[:3])
            if top:
                rows.append(f"| {wname} | {cname} | {r['cpu_s']:.1f} | {r['server_cpu_s']:.1f} | {top} | {rss} |")
    if not rows:
        return []
    return [
        "## Where the CPU and memory went",
        "",
        "CPU seconds by process kind (polled, so processes shorter than 0.1 s are under-counted; the total is exact), "
        "and the tree's RSS split by process kind at its peak.",
        "",
        "| workload | contender | tool CPU s | server CPU s | CPU by process kind (s) | RSS at the peak by kind (MB) |",
        "|---|---|---:|---:|---|---|",
        *rows,
        "",
    ]


def _eta_rows(results: dict[str, Any], key: str = "points") -> list[str]:
    rows = []
    for wname, w in results["workloads"].items():
        for cname in SKY:
            run = w["runs"].get(cname)
            if not run or "eta" not in run:
                continue
            for pt, v in run["eta"].get(key, {}).items():
                naive = "-" if v["naive_error"] is None else f"{v['naive_error'] * 100:+.1f} %"
                flag = ""
                if wname == "d" and pt == "50%" and key == "points":
                    flag = " ✅" if abs(v["product_error"]) <= ETA_TARGET else " ❌"
                rows.append(
                    f"| {wname} | {cname} | {pt} | {v['progress'] * 100:.0f} % | {v['elapsed_s']:.1f} | {v['actual_remaining_s']:.1f} | "
                    f"{v['product_eta_s']:.1f} | {v['product_error'] * 100:+.1f} %{flag} | "
                    f"{_num(v['naive_eta_s'])} | {naive} |"
                )
    return rows


def markdown(results: dict[str, Any], rat: dict[str, Any]) -> str:
    env = results["env"]
    lines = [
        f"# skymigrate benchmark — {results['started']}",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['mem_gib']} GiB; load average (1/5/15 min) at start "
        f"{_load(env.get('loadavg_at_start'))}, at end {_load(env.get('loadavg_at_end'))}"
        f"{_nice(env)}. Both S3 servers ({env['versitygw']}, posix "
        f"backend) and the RAM-disk staging live on {env['data_fs']} ({env['data_dir']}), on 127.0.0.1.",
        f"Tools: {env['s5cmd']}; {env['rclone']}; Python {env['python']}. Scale {env['scale']}, seed {env['seed']}, "
        f"source multipart part size {env['part_mib']} MiB. skymigrate driven by "
        f"`{'skymigrate run' if env['skymigrate_command'] == 'cli' else 'python -m bench.skydriver'}`"
        + (f", transfer overrides {env['transfer_overrides']}" if env["transfer_overrides"] else "")
        + (f", concurrency {env['concurrency_override']}" if env["concurrency_override"] else "")
        + ".",
        "",
        "Every run below was verified byte for byte (sha256 of every object read back through the S3 API).",
        "Peak RSS is summed over the tool's whole process tree; CPU is the tree's user+system seconds; "
        "server CPU is what both S3 servers burned meanwhile (same machine, same 2 cores).",
        "",
    ]
    for wname, w in results["workloads"].items():
        lines += [
            f"## ({wname}) {w['title']} — {w['objects']} objects, {w['bytes'] / 1e6:.0f} MB",
            "",
            "| contender | wall s | MB/s | objects/s | peak RSS MB | CPU s | server CPU s | verified |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for cname, r in w["runs"].items():
            extra = ""
            if cname == "limit" and "get_s" in r["notes"]:
                extra = f" (GET {r['notes']['get_s']:.1f}s + PUT {r['notes']['put_s']:.1f}s)"
            lines.append(
                f"| {cname}{extra} | {r['wall_s']:.2f} | {r['mb_s']:.1f} | {r['objects_s']:.1f} | "
                f"{r['peak_rss_mb']:.0f} | {r['cpu_s']:.1f} | {r['server_cpu_s']:.1f} | "
                f"{_verdict(r)} |"
            )
        if wname in rat:
            lines += ["", "| ratio (speed) | value | target | |", "|---|---:|---:|---|"]
            for k, v in rat[wname].items():
                t = "-" if v["target"] is None else f"≥ {v['target']}"
                mark = (
                    ""
                    if v["met"] is None
                    else ("✅" if v["met"] else f"❌ short by {(1 - v['ratio'] / v['target']) * 100:.0f} %")
                )
                lines.append(f"| {k} | {v['ratio']:.2f}x | {t} | {mark} |")
        lines.append("")
    lines += _cpu_rows(results)
    eta_rows = _eta_rows(results)
    if eta_rows:
        lines += [
            "## ETA quality",
            "",
            "Error = (predicted remaining - actual remaining) / actual remaining, at the first sample past each "
            f"fraction of bytes. Target: within ±{ETA_TARGET * 100:.0f} % at 50 % on (d). Naive = the seed's "
            "lifetime bytes/elapsed (of finished objects) on the same samples. Progress is what the product shows: "
            "verified bytes plus bytes in flight.",
            "",
            "| workload | run | point | progress at sample | elapsed s | actual remaining s | product ETA s | product error | naive ETA s | naive error |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
            *eta_rows,
            "",
        ]
        time_rows = _eta_rows(results, "time_points")
        if time_rows:
            lines += [
                "The same at 25/50/75 % of the run's wall time (every point its own sample):",
                "",
                "| workload | run | point | progress at sample | elapsed s | actual remaining s | product ETA s | product error | naive ETA s | naive error |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
                *time_rows,
                "",
            ]
    if "scale" in results:
        s = results["scale"]
        big = s["big"]
        ok = "✅" if big["peak_rss_bytes"] < PLAN_MEMORY_TARGET else "❌"
        lines += [
            "## Planning scale",
            "",
            f"Planning a generated {big['keys']:,}-key listing into {big['nodes']} shards: {big['planning_s']:.1f} s "
            f"({big['keys_per_s']:,} keys/s), peak RSS {big['peak_rss_bytes'] / 1e6:.0f} MB for the whole process "
            f"(target < {PLAN_MEMORY_TARGET / 1e6:.0f} MB {ok}), shard imbalance {big['imbalance'] * 100:.4f} %.",
            "",
            f"| size in bytes | {s['small']['keys']:,} keys | {big['keys']:,} keys | growth |",
            "|---|---:|---:|---:|",
            *(
                f"| {k} | {s['small']['sizes'][k]:,} | {big['sizes'][k]:,} | {s['growth_bytes'].get(k, '(grows: the manifests)')} |"
                for k in ("heartbeat_json", "status_json", "plan_json", "config_json", "shards_total")
            ),
            "",
        ]
    lines.append(f"Total benchmark time: {results.get('total_s', 0):.0f} s.")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wl = list(results["workloads"])
    names: list[str] = []
    for w in results["workloads"].values():
        names += [n for n in w["runs"] if n not in names]
    eta_run = next(
        (
            w["runs"][s]
            for k, w in results["workloads"].items()
            if k == "d"
            for s in SKY
            if "eta" in w["runs"].get(s, {})
        ),
        None,
    )
    fig, axes = plt.subplots(1, 2 if eta_run else 1, figsize=(14 if eta_run else 8, 5), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(len(names), 1)
    for i, n in enumerate(names):
        vals = [results["workloads"][w]["runs"].get(n, {}).get("mb_s", 0) for w in wl]
        bars = ax.bar([x + i * width for x in range(len(wl))], vals, width, label=n)
        for b, w in zip(bars, wl, strict=True):
            if not results["workloads"][w]["runs"].get(n, {}).get("verified", True):
                b.set_hatch("xx")
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(wl))])
    ax.set_xticklabels([f"({w})\n" + textwrap.fill(results["workloads"][w]["title"], 22) for w in wl], fontsize=8)
    ax.set_ylabel("MB/s (verified copies)")
    ax.set_title("Throughput per workload")
    ax.legend(fontsize=8)
    if eta_run:
        ax2 = axes[0][1]
        s = eta_run["eta"]["series"]
        xs = [p["elapsed_s"] for p in s]
        ax2.plot(xs, [p["actual_remaining_s"] for p in s], "k--", label="actual remaining")
        ax2.plot(xs, [p["product_eta_s"] for p in s], label="skymigrate ETA")
        ax2.plot(xs, [p["naive_eta_s"] for p in s], alpha=0.7, label="naive bytes/elapsed (seed)")
        ax2.set_xlabel("elapsed s")
        ax2.set_ylabel("remaining s")
        top = max(p["actual_remaining_s"] for p in s) * 2
        ax2.set_ylim(0, top)
        ax2.set_title("(d) ETA reported over time vs. the actual finish")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out: Path, stem: str) -> list[Path]:
    rat = ratios(results)
    results["ratios"] = rat
    md, js, png = out / f"{stem}.md", out / f"{stem}.json", out / f"{stem}.png"
    md.write_text(markdown(results, rat))
    js.write_text(json.dumps(results, indent=1))
    plot(results, png)
    return [md, js, png]
