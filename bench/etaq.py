"""ETA quality: what the product predicted at 25/50/75 % of the bytes, against when the run really ended,
next to the seed's naive lifetime-average method (core.eta.naive_eta) on the very same samples.

Error = (predicted remaining - actual remaining) / actual remaining: +10 % means it said 110 s when 100 s
were left. Actual remaining runs to the moment the command exited (what a user waits for); elapsed runs
from the moment it started (the events' own "elapsed" is whole seconds, too coarse for short runs).
"""

from __future__ import annotations

from typing import Any

from skymigrate.core.eta import naive_eta

POINTS = (0.25, 0.50, 0.75)


def _fraction(ev: dict[str, Any]) -> float:
    """Progress as the product shows it: verified bytes plus bytes in flight (status.percent)."""
    total = ev.get("bytes_total") or 0
    return (ev.get("bytes_done", 0) + ev.get("bytes_in_flight", 0)) / total if total else 0.0


def _point(ev: dict[str, Any], ended_at: float) -> dict[str, Any]:
    actual = max(ended_at - ev["t"], 1e-6)
    naive = naive_eta(ev["elapsed"], ev["bytes_done"], ev["bytes_total"])  # the seed counts finished objects
    return {
        "elapsed_s": round(ev["elapsed"], 2),
        "progress": round(_fraction(ev), 4),
        "actual_remaining_s": round(actual, 2),
        "product_eta_s": round(float(ev["eta_s"]), 2),
        "naive_eta_s": None if naive is None else round(naive, 2),
        "product_error": round((float(ev["eta_s"]) - actual) / actual, 4),
        "naive_error": None if naive is None else round((naive - actual) / actual, 4),
    }


def quality(events: list[dict[str, Any]], started_at: float, ended_at: float) -> dict[str, Any]:
    # Only while copying: before, there is no rate; after (verifying, done) the ETA is 0 by definition.
    events = [
        {**e, "elapsed": e["t"] - started_at}
        for e in events
        if e.get("phase", "Running") == "Running" and e.get("bytes_total")
    ]
    out: dict[str, Any] = {"points": {}, "time_points": {}}
    duration = ended_at - started_at
    for p in POINTS:
        # By progress (what the target is about), and by elapsed time (which progress jumps cannot skip).
        by_bytes = next((e for e in events if _fraction(e) >= p and e.get("eta_s") is not None), None)
        by_time = next((e for e in events if e["elapsed"] >= p * duration and e.get("eta_s") is not None), None)
        for where, ev in (("points", by_bytes), ("time_points", by_time)):
            if ev is not None:
                out[where][f"{int(p * 100)}%"] = _point(ev, ended_at)
    out["series"] = [
        {
            "elapsed_s": round(e["elapsed"], 2),
            "actual_remaining_s": round(ended_at - e["t"], 2),
            "product_eta_s": e.get("eta_s"),
            "naive_eta_s": naive_eta(e["elapsed"], e.get("bytes_done", 0), e.get("bytes_total", 0)),
            "progress": round(_fraction(e), 4),
        }
        for e in events
    ]
    return out
