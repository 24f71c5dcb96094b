"""The status model on made-up inputs: totals, percent, ETA (slowest node plus verification), conditions,
size bound."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from skymigrate.core.eta import VERIFY_PAGE_S
from skymigrate.core.plan import Plan, ShardSummary
from skymigrate.core.progress import NodeHeartbeat
from skymigrate.core.status import NodeView, condition, progress, rfc3339
from skymigrate.operator.view import local_time

NOW = 1_000_000.0


def plan(objects: int = 100, nbytes: int = 1000, planning_s: float = 0.0) -> Plan:
    return Plan(objects_listed=objects, bytes_listed=nbytes, objects_total=objects, bytes_total=nbytes,
                shards=[ShardSummary(rank=0, objects=objects // 2, bytes=nbytes // 2),
                        ShardSummary(rank=1, objects=objects // 2, bytes=nbytes // 2)], planned_at=NOW,
                planning_seconds=planning_s)  # fmt: skip


def hb(
    rank: int, done: int, total: int = 500, eta: float | None = 10.0, phase: str = "Running", **kw: object
) -> NodeHeartbeat:
    return NodeHeartbeat(rank=rank, phase=phase, started_at=NOW - 100, updated_at=NOW, objects_total=50,  # type: ignore[arg-type]
                         objects_done=done // 10, bytes_total=total, bytes_done=done, eta_s=eta, speed_bps=5.0,
                         work_rate=5.0, **kw)  # fmt: skip


def test_running_totals_percent_and_slowest_node_eta() -> None:
    nodes = [NodeView(0, "Running", hb(0, 400, eta=20)), NodeView(1, "Running", hb(1, 100, eta=80))]
    st = progress("Running", plan(planning_s=2.0), nodes, NOW - 100, NOW)
    assert st["bytes"] == {"total": 1000, "done": 500, "inFlight": 0, "failed": 0}
    assert st["progressText"] == "50.0%" and st["objectsText"] == "50/100"
    # The cluster ends with its slowest node, not the average, then verifies (as long as planning took).
    assert st["eta"]["seconds"] == 82
    assert st["eta"]["text"] == "1m 22s"
    assert st["speed"]["bytesPerSecond"] == 10
    assert [n["etaSeconds"] for n in st["nodes"]] == [20, 80]
    assert st["elapsed"] == {"seconds": 100, "text": "1m 40s"}


def test_stale_heartbeat_counts_elapsed_time() -> None:
    old = hb(0, 100, eta=60).model_copy(update={"updated_at": NOW - 15})
    st = progress("Running", plan(), [NodeView(0, "Running", old)], NOW - 100, NOW)
    assert st["nodes"][0]["etaSeconds"] == 45


def test_a_node_that_has_not_loaded_its_shard_makes_the_eta_unknown() -> None:
    # Its work is not known yet, nor when it starts on it: neither 0 nor the other nodes' ETA.
    nodes = [NodeView(0, "Running", hb(0, 250, eta=50)), NodeView(1, "Launching", None)]
    st = progress("Running", plan(), nodes, NOW - 10, NOW)
    assert "seconds" not in st["eta"] and st["eta"]["text"] == "-" and "completionTime" not in st["eta"]
    assert st["nodes"][1] == {"rank": 1, "phase": "Launching"}
    # The agent's first heartbeat, written before it reads its shard: totals of 0 are not "all done".
    launching = hb(0, 0, total=0, eta=None, phase="Launching").model_copy(update={"objects_total": 0})
    st = progress("Running", plan(), [NodeView(0, "Running", launching)], NOW - 1, NOW)
    assert "seconds" not in st["eta"]
    st = progress("Running", plan(), [NodeView(0, "Running", launching), nodes[0]], NOW - 1, NOW)
    assert "seconds" not in st["eta"]


def test_in_flight_bytes_show_in_progress_but_not_in_bytes_done() -> None:
    # A 900-byte object 90 % streamed (810 bytes in flight), 50 small bytes verified, 50 not started.
    node = hb(0, 50, total=1000, bytes_in_flight=810)
    st = progress("Running", plan(nbytes=1000), [NodeView(0, "Running", node)], NOW - 10, NOW)
    assert st["bytes"]["done"] == 50 and st["bytes"]["inFlight"] == 810
    assert st["progress"] == {"percent": 86.0, "verifiedPercent": 5.0}
    assert st["progressText"] == "86.0%"
    assert st["nodes"][0]["percent"] == 86.0 and st["nodes"][0]["bytesInFlight"] == 810
    assert st["nodes"][0]["bytesDone"] == 50
    # A finished node's last in-flight count is stale, not progress.
    done = hb(0, 1000, total=1000, phase="Succeeded", bytes_in_flight=500)
    st = progress("Running", plan(nbytes=1000), [NodeView(0, "Succeeded", done)], NOW - 10, NOW)
    assert st["bytes"]["inFlight"] == 0 and st["progress"]["percent"] == 100.0


def test_eta_and_completion_time_are_rounded_not_cut() -> None:
    nodes = [NodeView(0, "Running", hb(0, 100, eta=79.7))]
    st = progress("Running", plan(objects=0), nodes, NOW - 100, NOW)  # no keys: nothing to verify
    assert st["eta"]["seconds"] == 80 and st["eta"]["text"] == "1m 20s"
    assert st["eta"]["completionTime"] == rfc3339(NOW + 80)
    assert st["nodes"][0]["etaSeconds"] == 80 and st["nodes"][0]["eta"] == "1m 20s"
    st = progress("Running", plan(objects=0), [NodeView(0, "Running", hb(0, 100, eta=79.4))], NOW - 100, NOW)
    assert st["eta"]["seconds"] == 79 and st["eta"]["completionTime"] == rfc3339(NOW + 79)


def test_eta_covers_the_final_verification() -> None:
    nodes = [NodeView(0, "Running", hb(0, 100, eta=30)), NodeView(1, "Running", hb(1, 100, eta=10))]
    # Without a measured planning time: one ListObjectsV2 page per 1,000 keys.
    st = progress("Running", plan(objects=250_000), nodes, NOW - 100, NOW)
    assert st["eta"]["seconds"] == round(30 + 250 * VERIFY_PAGE_S)
    st = progress("Running", plan(objects=250_000, planning_s=12.0), nodes, NOW - 100, NOW)
    assert st["eta"]["seconds"] == 42
    # Every node finished: the verification is all that is left.
    done = [NodeView(r, "Succeeded", hb(r, 500, phase="Succeeded")) for r in (0, 1)]
    st = progress("Verifying", plan(objects=250_000, planning_s=12.0), done, NOW - 100, NOW)
    assert st["eta"]["seconds"] == 12 and st["eta"]["completionTime"] == rfc3339(NOW + 12)
    st = progress("Running", plan(objects=250_000, planning_s=12.0), done, NOW - 100, NOW)
    assert st["eta"]["seconds"] == 12


def test_completion_time_reads_in_local_time() -> None:
    at = NOW + 3600.0
    assert local_time(rfc3339(at), now=at) == datetime.fromtimestamp(at).strftime("%H:%M:%S")
    assert local_time(rfc3339(at), now=at + 3 * 86400) == datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
    assert local_time(None) == "-"


def test_unknown_rate_gives_unknown_eta() -> None:
    nodes = [NodeView(0, "Running", hb(0, 0, eta=None).model_copy(update={"work_rate": None}))]
    st = progress("Running", plan(), nodes, NOW - 1, NOW)
    assert "seconds" not in st["eta"] and st["eta"]["text"] == "-"


def test_terminal_phases() -> None:
    nodes = [
        NodeView(0, "Succeeded", hb(0, 500, phase="Succeeded")),
        NodeView(1, "Succeeded", hb(1, 500, phase="Succeeded")),
    ]
    st = progress("Succeeded", plan(), nodes, NOW - 100, NOW, finished_at=NOW)
    assert st["eta"]["seconds"] == 0 and st["progressText"] == "100.0%" and st["speedText"] == "-"
    assert st["completionTime"] == "1970-01-12T13:46:40Z"


def test_status_size_does_not_grow_with_objects() -> None:
    small = progress("Running", plan(10, 10), [NodeView(0, "Running", hb(0, 5, total=10))], NOW - 1, NOW)
    huge = progress(
        "Running", plan(10**9, 10**15), [NodeView(0, "Running", hb(0, 5 * 10**14, total=10**15))], NOW - 1, NOW
    )
    assert len(json.dumps(huge)) - len(json.dumps(small)) < 200


def test_condition_transition_time_moves_only_on_flip() -> None:
    c = condition([], "Ready", False, "Running", "copying", NOW)
    c2 = condition(c, "Ready", False, "Running", "still copying", NOW + 50)
    assert c2[0]["lastTransitionTime"] == c[0]["lastTransitionTime"] and c2[0]["message"] == "still copying"
    c3 = condition(c2, "Ready", True, "Succeeded", "done", NOW + 100)
    assert c3[0]["lastTransitionTime"] != c[0]["lastTransitionTime"] and c3[0]["status"] == "True"


def test_operator_defaults_fill_only_what_the_manifest_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from skymigrate.operator.kopf_main import parse_spec

    monkeypatch.setenv("SKYMIGRATE_DEFAULT_LAUNCHER", "skypilot")
    monkeypatch.setenv("SKYMIGRATE_STATE_URL", "s3://state-bucket/runs")
    monkeypatch.setenv("SKYMIGRATE_STATE_ENDPOINT", "https://s3.example.com")
    minimal = {"source": {"bucket": "src-bucket"}, "target": {"bucket": "dst-bucket"}}
    spec, from_operator = parse_spec(minimal)
    assert spec.launcher.type == "skypilot" and from_operator
    assert spec.state_store.url == "s3://state-bucket/runs" and spec.state_store.endpoint == "https://s3.example.com"
    own = {**minimal, "launcher": {"type": "local"}, "stateStore": {"url": "file:///var/lib/x"}}
    spec, from_operator = parse_spec(own)
    assert spec.launcher.type == "local" and spec.state_store.url == "file:///var/lib/x" and not from_operator
