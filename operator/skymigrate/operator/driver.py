"""One migration's lifecycle, shared by the kopf operator and `skymigrate run`:

    Pending -> Planning -> Launching -> Running -> Verifying -> Succeeded | Failed   (Cancelled on delete)

Each call to ``step`` does one short piece of work (the launcher's may take minutes: the operator runs
``step`` in a worker thread) and returns the status to publish. Everything needed to pick a migration up
again lives in the state store and the launcher, so a restarted operator resumes where it was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skymigrate.core import humanize
from skymigrate.core.credentials import Credentials
from skymigrate.core.manifest import decode_entries
from skymigrate.core.metrics import OperatorMetrics
from skymigrate.core.plan import REPORT, Plan, RunConfig, failed_path, progress_path, shard_path
from skymigrate.core.preflight import PreflightError, check_bucket
from skymigrate.core.progress import NodeHeartbeat
from skymigrate.core.s3 import make_client, make_http_client
from skymigrate.core.spec import MigrationSpec
from skymigrate.core.statestore import StateStore, StateStoreError, open_store, probe_writable
from skymigrate.core.status import TERMINAL, NodeView, Phase, condition, progress, rfc3339
from skymigrate.operator.launchers.base import Launcher, LaunchRequest
from skymigrate.operator.planner import list_source, read_plan, write_plan

log = logging.getLogger("skymigrate.operator")

MAX_RELAUNCHES = 3
EventSink = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)


@dataclass
class Identity:
    namespace: str
    name: str
    uid: str
    generation: int = 1

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.name}/{self.uid}"


@dataclass
class Creds:
    source: Credentials = field(repr=False)
    target: Credentials = field(repr=False)
    state: Credentials | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        env = {**self.source.to_env("source"), **self.target.to_env("target")}
        if self.state:
            env.update(self.state.to_env("state"))
        return env

    def secret_values(self) -> list[str]:
        return [
            *self.source.secret_values(),
            *self.target.secret_values(),
            *(self.state.secret_values() if self.state else []),
        ]


class Driver:
    def __init__(
        self,
        ident: Identity,
        spec: MigrationSpec,
        creds: Creds,
        launcher: Launcher,
        *,
        status: dict[str, Any] | None = None,
        metrics: OperatorMetrics | None = None,
        on_event: EventSink = lambda t, r, m: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ident, self.spec, self.creds, self.launcher = ident, spec, creds, launcher
        self.metrics, self.on_event, self.clock = metrics, on_event, clock
        prev = status or {}
        self.phase: Phase = prev.get("phase") or "Pending"
        self.conditions: list[dict[str, Any]] = list(prev.get("conditions") or [])
        self.started_at: float | None = _ts(prev.get("startTime"))
        self.finished_at: float | None = _ts(prev.get("completionTime"))
        self.message: str = prev.get("message", "")
        self.report_summary: dict[str, Any] | None = prev.get("report")
        self.relaunches: dict[int, int] = {}
        self._report: dict[str, Any] | None = None
        self.plan: Plan | None = None
        self.nodes: list[NodeView] = []
        self._store: StateStore | None = None
        ss = spec.state_store
        self.state_root = ss.url.rstrip("/") + "/" + ident.path
        self.request = LaunchRequest(
            ident.namespace, ident.name, ident.uid, spec, self.state_root, secret_env=creds.env()
        )
        # A resumed migration that was mid-flight re-attaches through the launcher.
        if self.phase in ("Launching", "Running", "Verifying", "Planning"):
            self.phase = "Planning" if self.phase == "Planning" else "Launching"

    # --- plumbing --------------------------------------------------------------------------------
    @property
    def store(self) -> StateStore:
        if self._store is None:
            ss = self.spec.state_store
            self._store = open_store(ss.url, ss.endpoint, self.creds.state, ss.region).child(self.ident.path)
        return self._store

    def _set_phase(self, phase: Phase, reason: str, message: str, *, warning: bool = False) -> None:
        if phase == self.phase:
            return
        log.info("%s: %s -> %s (%s)", self.ident.name, self.phase, phase, message)
        self.phase = phase
        self.message = message
        self.on_event("Warning" if warning else "Normal", reason, message)
        now = self.clock()
        g = self.ident.generation
        self.conditions = condition(self.conditions, "Ready", phase == "Succeeded", reason, message, now, g)
        self.conditions = condition(self.conditions, "Progressing", phase not in TERMINAL, reason, message, now, g)
        if phase == "Failed":
            self.conditions = condition(self.conditions, "Failed", True, reason, message, now, g)
        if phase in TERMINAL:
            self.finished_at = now

    def fail(self, reason: str, message: str) -> None:
        self._set_phase("Failed", reason, message, warning=True)

    # --- the state machine -----------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """Advance by at most one phase; returns the status to publish."""
        try:
            if self.phase == "Pending":
                self._preflight()
            elif self.phase == "Planning":
                self._plan()
            elif self.phase == "Launching":
                self._launch()
            elif self.phase == "Running":
                self._monitor()
            elif self.phase == "Verifying":
                self._verify()
        except PreflightError as e:
            self.fail(e.reason, str(e))
        except StateStoreError as e:
            self.fail("StateStoreError", str(e))
        except Exception as e:  # unexpected: say what, keep the operator alive, never loop hot
            log.exception("%s: %s failed", self.ident.name, self.phase)
            self.fail("InternalError", f"{self.phase}: {type(e).__name__}: {e}")
        return self.status()

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL

    def _preflight(self) -> None:
        s, t = self.spec.source, self.spec.target
        check_bucket(make_client(s.endpoint, self.creds.source, s.region, attempts=1), "source", s.endpoint, s.bucket)
        tc = make_client(t.endpoint, self.creds.target, t.region, attempts=1)
        check_bucket(tc, "target", t.endpoint, t.bucket, write_probe_key=t.prefix + ".skymigrate-write-probe")
        try:
            probe_writable(self.store)
        except StateStoreError:
            raise
        except Exception as e:
            raise StateStoreError(f"state store {self.state_root} is not usable: {str(e).splitlines()[0][:200]}") from e
        self.started_at = self.started_at or self.clock()
        self.conditions = condition(
            self.conditions, "PreflightPassed", True, "EndpointsReady",
            "source and target reachable, credentials accepted, buckets exist, target writable",
            self.clock(), self.ident.generation,
        )  # fmt: skip
        self._set_phase("Planning", "Planning", f"listing {self.spec.source.url()}")

    def _plan(self) -> None:
        self.plan = read_plan(self.store)
        if self.plan is None:
            s = self.spec.source
            client = make_http_client(s.endpoint, self.creds.source, s.region, path_style=s.path_style)
            cfg = RunConfig(namespace=self.ident.namespace, name=self.ident.name, uid=self.ident.uid, spec=self.spec)
            self.plan = write_plan(self.store, cfg, list_source(client, s.bucket, s.prefix))
        else:  # resuming: the migration started when it was planned
            self.started_at = min(self.started_at or self.plan.planned_at, self.plan.planned_at)
        p = self.plan
        self._set_phase(
            "Launching", "Planned",
            f"{p.objects_total} objects ({humanize.size(p.bytes_total)}) in {len(p.shards)} shards",
        )  # fmt: skip

    def _launch(self) -> None:
        if self.plan is None:
            self.plan = read_plan(self.store)
            if self.plan is None:
                self._set_phase("Planning", "Replanning", "no plan in the state store")
                return
        self.started_at = self.started_at or self.clock()
        self.launcher.launch(self.request)
        self._set_phase(
            "Running", "Launched", f"{self.spec.nodes} node agent(s) started by the {self.launcher.name} launcher"
        )

    def observe(self) -> list[NodeView]:
        """Heartbeats plus the launcher's view, one NodeView per rank."""
        launch = self.launcher.poll(self.request)
        by_rank = {n.rank: n for n in launch.nodes}
        views: list[NodeView] = []
        for rank in range(self.spec.nodes):
            raw = self.store.get(progress_path(rank))
            hb = NodeHeartbeat.model_validate_json(raw) if raw else None
            ln = by_rank.get(rank)
            if hb and hb.finished:
                views.append(NodeView(rank, hb.phase, hb, hb.last_error or ""))
            elif ln and ln.phase in ("Failed", "Succeeded", "Lost"):
                # Exited without a final heartbeat: crashed or killed.
                views.append(NodeView(rank, "Lost", hb, ln.message))
            else:
                phase = ln.phase if ln else "Pending"
                views.append(
                    NodeView(rank, "Running" if hb and phase != "Launching" else phase, hb, ln.message if ln else "")
                )
        if launch.phase == "Failed":
            self.fail(launch.reason or "LaunchFailed", launch.message or "the launcher failed")
        self.nodes = views
        return views

    def _monitor(self) -> None:
        if self.plan is None:
            self.plan = read_plan(self.store)
        views = self.observe()
        if self.done:
            return
        lost = [v.rank for v in views if v.phase == "Lost"]
        for rank in lost:
            n = self.relaunches[rank] = self.relaunches.get(rank, 0) + 1
            if n > MAX_RELAUNCHES:
                self.fail("NodeLost", f"node {rank} was lost {n - 1} times: {views[rank].message}")
                return
            self.on_event(
                "Warning", "NodeLost", f"node {rank} stopped without finishing; relaunching (resumes from its journal)"
            )
            self.launcher.relaunch(self.request, [rank])
        bad_input = [
            v
            for v in views
            if v.phase == "Failed"
            and v.heartbeat
            and v.heartbeat.objects_done == 0
            and v.heartbeat.objects_total == 0
            and v.heartbeat.last_error
        ]
        if bad_input:
            v = bad_input[0]
            self.launcher.teardown(self.request)
            self.fail("AgentFailed", f"node {v.rank}: {v.heartbeat.last_error if v.heartbeat else v.message}")
            return
        if all(v.phase in ("Succeeded", "Failed") for v in views):
            self._set_phase("Verifying", "Verifying", "every node finished; checking the target against the plan")

    def _verify(self) -> None:
        if self._report is None:
            self._report = self.final_report()
            self.store.put(REPORT, json.dumps(self._report, indent=2, ensure_ascii=False).encode())
        report = self._report
        try:
            self.launcher.teardown(self.request)
        except Exception as e:
            # The copy is done and reported; machines still up cost money, so keep trying every tick.
            self.on_event("Warning", "TeardownFailed", f"{e}; retrying")
            self.conditions = condition(self.conditions, "TornDown", False, "TeardownFailed", str(e), self.clock(),
                                        self.ident.generation)  # fmt: skip
            return
        if any(c["type"] == "TornDown" for c in self.conditions):
            self.conditions = condition(self.conditions, "TornDown", True, "TornDown", "agents stopped", self.clock(),
                                        self.ident.generation)  # fmt: skip
        failed = report["failedObjects"]
        missing = report["target"]["missingOrDifferent"]
        self.report_summary = {
            "url": f"{self.state_root}/{REPORT}",
            "failedObjects": failed,
            "missingInTarget": missing,
            "averageSpeedGBPerHour": report["averageSpeedGBPerHour"],
            "totalTime": report["totalTimeText"],
        }
        if failed or missing:
            self.fail(
                "ObjectsFailed",
                f"{failed} objects failed and {missing} are missing or differ in the target; "
                f"see {self.state_root}/failed/ and {REPORT}",
            )
        else:
            self._set_phase(
                "Succeeded",
                "Succeeded",
                f"{report['source']['objects']} objects ({humanize.size(report['source']['bytes'])}) "
                f"verified in the target in {report['totalTimeText']}",
            )

    # --- the final report ------------------------------------------------------------------------
    def final_report(self) -> dict[str, Any]:
        """Reconcile the plan with the target's listing, and gather failed objects with their reasons."""
        t = self.spec.target
        client = make_http_client(t.endpoint, self.creds.target, t.region, path_style=t.path_style)
        in_target = {o.key[len(t.prefix) :]: o.size for o in client.list_objects(t.bucket, t.prefix)}
        planned = matched = planned_bytes = matched_bytes = 0
        for rank in range(self.spec.nodes):
            raw = self.store.get(shard_path(rank))
            for e in decode_entries(raw) if raw else []:
                planned += 1
                planned_bytes += e.size
                if in_target.get(e.key) == e.size:
                    matched += 1
                    matched_bytes += e.size
        failures: list[dict[str, Any]] = []
        for rank in range(self.spec.nodes):
            raw = self.store.get(failed_path(rank))
            for line in (raw or b"").decode().splitlines():
                if line.strip():
                    failures.append({"node": rank, **json.loads(line)})
        views = self.nodes or self.observe()
        copied = sum((v.heartbeat.bytes_done - v.heartbeat.bytes_skipped) for v in views if v.heartbeat)
        start = self.started_at or self.clock()
        elapsed = max(self.clock() - start, 1e-9)
        return {
            "migration": self.ident.path,
            "totalTimeSeconds": round(elapsed, 3),
            "totalTimeText": humanize.duration(elapsed),
            "source": {"objects": planned, "bytes": planned_bytes},
            "target": {
                "objects": matched,
                "bytes": matched_bytes,
                "objectsUnderPrefix": len(in_target),
                "missingOrDifferent": planned - matched,
            },
            "bytesTransferred": copied,
            "averageSpeedGBPerHour": round(copied / 1e9 / (elapsed / 3600), 2),
            "failedObjects": len(failures),
            "failed": failures[:1000],
            "nodes": [{"rank": v.rank, "phase": v.phase} for v in views],
        }

    # --- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = self.clock()
        st: dict[str, Any] = {
            "phase": self.phase,
            "observedGeneration": self.ident.generation,
            "message": self.message,
            "stateStore": self.state_root,
            "conditions": self.conditions,
        }
        st.update(progress(self.phase, self.plan, self.nodes, self.started_at, now, self.finished_at))
        if self.report_summary:
            st["report"] = self.report_summary
        if self.metrics:
            self._export(st)
        return st

    def _export(self, st: dict[str, Any]) -> None:
        m, ns, name = self.metrics, self.ident.namespace, self.ident.name
        assert m is not None
        for state in ("total", "done", "failed"):
            m.objects.labels(ns, name, state).set(st["objects"][state])
            m.bytes.labels(ns, name, state).set(st["bytes"][state])
        m.progress.labels(ns, name).set(st["progress"]["percent"] / 100)
        m.speed.labels(ns, name).set(st["speed"]["bytesPerSecond"])
        eta = st["eta"].get("seconds")
        m.eta.labels(ns, name).set(float("nan") if eta is None else eta)
        m.nodes.labels(ns, name).set(self.spec.nodes)
        m.set_phase(ns, name, self.phase)

    def cancel(self, delete_state: bool) -> None:
        self.launcher.teardown(self.request)
        if delete_state:
            self.store.delete_all()
        self._set_phase(
            "Cancelled",
            "Cancelled",
            "migration deleted; agents stopped"
            + ("; state deleted" if delete_state else f"; state kept at {self.state_root}"),
        )


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


__all__ = ["Creds", "Driver", "Identity", "rfc3339"]
