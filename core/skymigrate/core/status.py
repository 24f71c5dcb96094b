"""The one status model: what `kubectl get migrations` and `skymigrate run` show, built from the plan,
the node heartbeats and the launcher's view. Pure: no I/O, so it is unit-tested on made-up inputs.

Its size depends on the node count, never on the object count.

Progress (``percent``, ``progressText``, the bars) counts the bytes moved: verified plus in flight, so a
huge object 90 % streamed shows as such; ``bytes.done`` and ``verifiedPercent`` stay verified only
(in-flight bytes can go back when a copy is retried). The ETA covers the whole run: the slowest node
plus the final verification; it is unknown until every node has loaded its shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from skymigrate.core import humanize
from skymigrate.core.eta import NodeEta, cluster_eta, verify_eta
from skymigrate.core.plan import Plan
from skymigrate.core.progress import NodeHeartbeat

Phase = Literal["Pending", "Planning", "Launching", "Running", "Verifying", "Succeeded", "Failed", "Cancelled"]
TERMINAL: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled"})


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: float,
    generation: int = 0,
) -> list[dict[str, Any]]:
    """Set one condition in the Kubernetes shape; lastTransitionTime moves only when the status flips."""
    out = [c for c in conditions if c.get("type") != type_]
    old = next((c for c in conditions if c.get("type") == type_), None)
    s = "True" if status else "False"
    changed = old is None or old.get("status") != s
    out.append(
        {
            "type": type_,
            "status": s,
            "reason": reason,
            "message": message[:1000],
            "lastTransitionTime": rfc3339(now) if changed else old["lastTransitionTime"],  # type: ignore[index]
            "observedGeneration": generation,
        }
    )
    return sorted(out, key=lambda c: str(c["type"]))


@dataclass
class NodeView:
    rank: int
    phase: str
    heartbeat: NodeHeartbeat | None
    message: str = ""


def node_eta(n: NodeView, now: float) -> NodeEta:
    hb = n.heartbeat
    if hb is None or hb.phase in ("Pending", "Launching"):
        # No shard loaded yet: its totals are 0, which must not read as "nothing left".
        return NodeEta(n.rank, None, 0.0, 0.0, None, known=False)
    if hb.finished:
        return NodeEta(n.rank, 0.0, 0.0, 0.0, hb.work_rate, hb.object_cost)
    # The heartbeat is a few seconds old: count that time as spent.
    eta = None if hb.eta_s is None else max(hb.eta_s - max(now - hb.updated_at, 0.0), 0.0)
    return NodeEta(
        n.rank, eta, hb.remaining_bytes + hb.bytes_in_flight, hb.remaining_objects, hb.work_rate, hb.object_cost
    )


def node_status(n: NodeView, now: float) -> dict[str, Any]:
    hb = n.heartbeat
    out: dict[str, Any] = {"rank": n.rank, "phase": n.phase}
    if n.message:
        out["message"] = n.message[:300]
    if hb is None:
        return out
    eta = node_eta(n, now).eta_s
    in_flight = 0 if hb.finished else hb.bytes_in_flight
    out.update(
        {
            "objectsDone": hb.objects_done,
            "objectsTotal": hb.objects_total,
            "objectsFailed": hb.objects_failed,
            "bytesDone": hb.bytes_done,
            "bytesInFlight": in_flight,
            "bytesTotal": hb.bytes_total,
            "percent": round(percent(hb.bytes_done + in_flight, hb.bytes_total, hb.finished), 1),
            "speedBytesPerSecond": int(hb.speed_bps or 0),
            "speed": humanize.rate(hb.speed_bps),
            "etaSeconds": None if eta is None else round(eta),
            "eta": humanize.duration(eta),
            "ramDiskUsedPercent": round(100.0 * hb.ramdisk_used / hb.ramdisk_capacity, 1)
            if hb.ramdisk_capacity
            else 0.0,
            "lastHeartbeat": rfc3339(hb.updated_at),
        }
    )
    if hb.last_error:
        out["lastError"] = hb.last_error[:300]
    return {k: v for k, v in out.items() if v is not None}


def percent(moved: float, total: float, finished: bool) -> float:
    """Share of the bytes moved, 0-100 (in-flight bytes included by the caller)."""
    if not total:
        return 100.0 if finished else 0.0
    return min(100.0 * moved / total, 100.0)


def run_eta(phase: Phase, plan: Plan | None, nodes: list[NodeView], now: float) -> float | None:
    """Seconds to the end of the run: the slowest node, then the final verification."""
    verify = verify_eta(plan.objects_listed, plan.planning_seconds) if plan else 0.0
    if phase == "Running":
        copy = cluster_eta(node_eta(n, now) for n in nodes)
        return None if copy is None else copy + verify
    if phase == "Verifying":  # published once, as verification starts (the driver does it in one step)
        return verify
    return 0.0 if phase == "Succeeded" else None


def progress(
    phase: Phase,
    plan: Plan | None,
    nodes: list[NodeView],
    started_at: float | None,
    now: float,
    finished_at: float | None = None,
) -> dict[str, Any]:
    """Totals, percent, speed, ETA and the per-node list (everything but conditions and phase bookkeeping)."""
    hbs = [n.heartbeat for n in nodes if n.heartbeat]
    total_obj = plan.objects_total if plan else 0
    total_bytes = plan.bytes_total if plan else 0
    done_obj = sum(h.objects_done for h in hbs)
    done_bytes = sum(h.bytes_done for h in hbs)
    in_flight = sum(h.bytes_in_flight for h in hbs if not h.finished)
    failed_obj = sum(h.objects_failed for h in hbs)
    failed_bytes = sum(h.bytes_failed for h in hbs)
    skipped = sum(h.objects_skipped for h in hbs)
    speed = sum(h.speed_bps or 0 for h in hbs if not h.finished) if phase == "Running" else 0.0
    succeeded = phase == "Succeeded"
    pct = percent(done_bytes + in_flight, total_bytes, succeeded)
    eta = run_eta(phase, plan, nodes, now)
    end = finished_at or now
    elapsed = end - started_at if started_at else None
    out: dict[str, Any] = {
        "objects": {"total": total_obj, "done": done_obj, "failed": failed_obj, "skipped": skipped},
        "bytes": {"total": total_bytes, "done": done_bytes, "inFlight": in_flight, "failed": failed_bytes},
        "progress": {
            "percent": round(pct, 1),
            "verifiedPercent": round(percent(done_bytes, total_bytes, succeeded), 1),
        },
        "progressText": f"{pct:.1f}%",
        "objectsText": f"{done_obj}/{total_obj}",
        "speed": {"bytesPerSecond": int(speed), "text": humanize.rate(speed) if speed else "-"},
        "speedText": humanize.rate(speed) if speed else "-",
        "eta": {
            "seconds": None if eta is None else round(eta),
            "text": humanize.duration(eta),
            # Rounded like the seconds (rfc3339 cuts the fraction off): now + 9.7 s is 10 s away, not 9.
            "completionTime": rfc3339(round(now + eta))
            if eta is not None and phase not in TERMINAL
            else rfc3339(finished_at),
        },
        "startTime": rfc3339(started_at),
        "completionTime": rfc3339(finished_at),
        "elapsed": {"seconds": None if elapsed is None else int(elapsed), "text": humanize.duration(elapsed)},
        "nodeCount": len(nodes),
        "nodes": [node_status(n, now) for n in nodes],
    }
    out["eta"] = {k: v for k, v in out["eta"].items() if v is not None}
    out["elapsed"] = {k: v for k, v in out["elapsed"].items() if v is not None}
    return {k: v for k, v in out.items() if v is not None}
