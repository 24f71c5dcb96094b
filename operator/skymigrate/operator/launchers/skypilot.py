"""Node agents on a SkyPilot cluster (or as a SkyPilot managed job, for spot recovery).

One Migration is one SkyPilot cluster named ``req.cluster_name``, ``spec.nodes`` nodes, one agent per
node. The launcher never imports ``sky`` (see sky_client.py for why); all its methods are synchronous,
safe to call from several worker threads at once, and may block for minutes (launch, teardown).

Bookkeeping per migration lives in ``<run dir>/sky/<uid>/state.json`` (request and job ids: no
secrets) so a restarted operator re-attaches; without it, the cluster (or managed job) is found by
name. A launch that fails is recorded and reported by ``poll`` as Failed with SkyPilot's reason.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skymigrate.operator.launchers import sky_task
from skymigrate.operator.launchers.base import LaunchRequest, LaunchStatus, NodeLaunchPhase, NodeState
from skymigrate.operator.launchers.sky_client import LONG_CALL_TIMEOUT_S, Redactor, SkyClient, SkyError
from skymigrate.operator.launchers.sky_wheel import build_agent_wheel

log = logging.getLogger("skymigrate.operator")

REASONS = {
    "provisioning": "ProvisioningFailed",
    "credentials": "CredentialsUnavailable",
    "invalid": "InvalidSkyPilotTask",
    "api": "SkyPilotApiUnavailable",
    "unavailable": "SkyPilotNotInstalled",
    "cancelled": "LaunchCancelled",
    "missing": "ClusterGone",
    "not_up": "ClusterNotUp",
    "error": "LaunchFailed",
}
# SkyPilot job statuses (cluster jobs and managed jobs) -> node phase.
_JOB_PHASE: dict[str, NodeLaunchPhase] = {
    "INIT": "Launching",
    "PENDING": "Launching",
    "SUBMITTED": "Launching",
    "STARTING": "Launching",
    "SETTING_UP": "Launching",
    "RECOVERING": "Launching",
    "RUNNING": "Running",
    "WINDING_DOWN": "Running",
    "SUCCEEDED": "Succeeded",
}
_PROVISIONING_FAILURES = {"FAILED_PRECHECKS", "FAILED_NO_RESOURCE"}


def sky_root() -> Path:
    return Path(os.environ.get("SKYMIGRATE_RUN_DIR", Path.home() / ".cache" / "skymigrate" / "run")) / "sky"


def _aws_files() -> str:
    return (
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
        + " / "
        + os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")
    )


def _secret_values(req: LaunchRequest) -> list[str]:
    return [v for k, v in req.secret_env.items() if not k.endswith(("_PROFILE", "_ANONYMOUS"))]


@dataclass
class _State:
    """What the launcher knows about one migration's SkyPilot resources (persisted; never secrets)."""

    managed: bool = False
    request_id: str | None = None
    launched: bool = False
    torn_down: bool = False
    failure: dict[str, str] | None = None  # {"reason", "message"}
    jobs: dict[str, list[int] | None] = field(default_factory=dict)  # job id -> ranks it runs (None: all)


@dataclass
class _Live:
    """In-process only: the launch in flight and the processes a teardown must stop."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    launching: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancels: list[Callable[[], None]] = field(default_factory=list)  # abort the waits in flight
    relaunching: set[int] = field(default_factory=set)
    cached: tuple[float, LaunchStatus] | None = None


class SkyPilotLauncher:
    name = "skypilot"

    def __init__(
        self,
        client: SkyClient | None = None,
        root: Path | None = None,
        *,
        poll_interval: float | None = None,
        teardown_attempts: int = 4,
        teardown_backoff: float = 5.0,
        agent: sky_task.AgentSource | None = None,
    ) -> None:
        self.root = root or sky_root()
        self.redact = client.redact if client else Redactor()
        self.client = client or SkyClient(log_file=self.root / "skypilot-client.log", redact=self.redact)
        self.poll_interval = (
            poll_interval if poll_interval is not None else float(os.environ.get("SKYMIGRATE_SKY_POLL_SECONDS", "10"))
        )
        self.teardown_attempts = teardown_attempts
        self.teardown_backoff = teardown_backoff
        self._agent = agent
        self._live: dict[str, _Live] = {}
        self._live_lock = threading.Lock()

    # --- bookkeeping ------------------------------------------------------------------------------
    def _l(self, req: LaunchRequest) -> _Live:
        with self._live_lock:
            return self._live.setdefault(req.uid, _Live())

    def _dir(self, req: LaunchRequest) -> Path:
        d = self.root / req.uid
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _load(self, req: LaunchRequest) -> _State:
        try:
            raw = json.loads((self._dir(req) / "state.json").read_text())
            return _State(**raw)
        except (OSError, ValueError, TypeError):
            return _State(managed=req.spec.launcher.recovery)

    def _save(self, req: LaunchRequest, st: _State) -> None:
        p = self._dir(req) / "state.json"
        tmp = p.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(asdict(st)))
        tmp.replace(p)

    def _fail(self, req: LaunchRequest, st: _State, e: SkyError, what: str) -> None:
        st.failure = {"reason": REASONS.get(e.kind, "LaunchFailed"), "message": self.redact(f"{what}: {e.message}")}
        log.warning("%s: SkyPilot %s failed (%s): %s", req.name, what, e.type, st.failure["message"])
        self._save(req, st)

    def log_file(self, req: LaunchRequest) -> Path:
        return self._dir(req) / "launch.log"

    def agent_source(self) -> sky_task.AgentSource:
        """$SKYMIGRATE_AGENT_PIP (a requirement or URL), else a wheel of this very code."""
        if self._agent is None:
            pip = os.environ.get("SKYMIGRATE_AGENT_PIP")
            if pip:
                self._agent = sky_task.AgentSource(pip=pip)
            else:
                from importlib.metadata import PackageNotFoundError, version

                try:
                    v = version("skymigrate")
                except PackageNotFoundError:
                    v = "0.0.0"
                self._agent = sky_task.AgentSource(wheel=build_agent_wheel(self.root / "wheels", v))
        return self._agent

    def task(self, req: LaunchRequest, ranks: list[int] | None = None) -> dict[str, Any]:
        return sky_task.build(req, self.agent_source(), managed=req.spec.launcher.recovery, ranks=ranks)

    def _submit_args(self, req: LaunchRequest, ranks: list[int] | None = None) -> dict[str, Any]:
        return {
            "task": self.task(req, ranks),
            "secrets": sky_task.secrets(req),
            "cluster": req.cluster_name,
            "managed": req.spec.launcher.recovery,
        }

    def _wait(self, req: LaunchRequest, request_id: str) -> dict[str, Any]:
        live = self._l(req)
        mine: list[Callable[[], None]] = []

        def track(cancel: Callable[[], None]) -> None:
            with live.lock:
                live.cancels.append(cancel)
                mine.append(cancel)

        try:
            return self.client.call(
                "wait", request_id=request_id, timeout=LONG_CALL_TIMEOUT_S, log_file=self.log_file(req), on_start=track
            )
        finally:
            with live.lock:
                live.cancels = [c for c in live.cancels if c not in mine]

    def _record_jobs(self, st: _State, result: dict[str, Any], ranks: list[int] | None) -> None:
        ids = result.get("job_ids") or ([result["job_id"]] if result.get("job_id") is not None else [])
        for j in ids:
            st.jobs[str(j)] = ranks

    # --- the protocol -----------------------------------------------------------------------------
    def launch(self, req: LaunchRequest) -> None:
        self.redact.add(_secret_values(req))
        live = self._l(req)
        request_id, resumed = self._begin(req)
        if request_id is None:
            return
        try:
            result = self._wait(req, request_id)
        except SkyError as e:
            with live.lock:
                live.launching = False
                if live.cancelled.is_set():
                    return  # torn down while launching: not a failure
                st = self._load(req)
                if not (resumed and e.kind in ("error", "missing", "api")):
                    self._fail(req, st, e, "launch")
                    return
                # The request a previous operator followed is unknown to this API server: launch afresh.
                st.request_id = None
                self._save(req, st)
            self.launch(req)
            return
        with live.lock:
            live.launching = False
            live.cached = None
            st = self._load(req)
            if live.cancelled.is_set() or st.torn_down:
                return
            st.launched = True
            self._record_jobs(st, result, None)
            self._save(req, st)
        log.info("%s: SkyPilot %s is up, jobs %s", req.name, req.cluster_name, sorted(st.jobs))

    def _begin(self, req: LaunchRequest) -> tuple[str | None, bool]:
        """Under the lock: check, then submit (or resume following) a launch. (request id, resumed)."""
        live = self._l(req)
        with live.lock:
            if live.launching:
                return None, False  # another thread is launching it
            st = self._load(req)
            if st.launched and not st.torn_down and st.failure is None:
                return None, False  # re-attach: already running
            if not req.state_url.startswith("s3://"):
                self._fail(
                    req,
                    st,
                    SkyError("invalid", "StateStore", f"{req.state_url} is local to this machine"),
                    "the SkyPilot launcher needs an s3:// state store both this operator and the nodes reach",
                )
                return None, False
            if missing := sky_task.missing_profiles(req):
                self._fail(
                    req,
                    st,
                    SkyError(
                        "credentials", "Profile", f"AWS profile(s) {', '.join(missing)} not found in {_aws_files()}"
                    ),
                    "profile credentials are copied to the nodes from this machine's AWS config files",
                )
                return None, False
            live.cancelled.clear()
            live.cached = None
            if st.request_id and not st.launched and not st.torn_down and st.failure is None:
                # A launch submitted before an operator restart: follow it rather than launch twice.
                live.launching = True
                log.info("%s: following SkyPilot launch request %s", req.name, st.request_id)
                return st.request_id, True
            if not st.launched and self._adopt(req, st):
                return None, False
            st = _State(managed=req.spec.launcher.recovery)
            try:
                submitted = self.client.call("launch", **self._submit_args(req))
            except SkyError as e:
                self._fail(req, st, e, "launch")
                return None, False
            st.request_id = submitted["request_id"]
            self._save(req, st)
            live.launching = True
        log.info("%s: SkyPilot launch of %s submitted (request %s)", req.name, req.cluster_name, st.request_id)
        return st.request_id, False

    def _adopt(self, req: LaunchRequest, st: _State) -> bool:
        """A cluster or managed job by this name, launched before a restart that lost our state file."""
        try:
            if st.managed:
                jobs = self.client.call("jobs_status", name=req.cluster_name)["jobs"]
                live_jobs = [j for j in jobs if j["status"] in _JOB_PHASE]
                if not live_jobs:
                    return False
                st.jobs = {str(j["job_id"]): None for j in live_jobs}
            else:
                found = self.client.call("status", cluster=req.cluster_name)
                if found["cluster"] is None or not found.get("jobs"):
                    return False
                st.jobs = {str(max(j["job_id"] for j in found["jobs"])): None}
        except SkyError:
            return False
        st.launched = True
        self._save(req, st)
        log.info("%s: re-attached to SkyPilot %s (jobs %s)", req.name, req.cluster_name, sorted(st.jobs))
        return True

    def relaunch(self, req: LaunchRequest, ranks: list[int]) -> None:
        """Run the agents of ``ranks`` again (they resume from their journals); other nodes stay idle."""
        self.redact.add(_secret_values(req))
        live = self._l(req)
        args = self._submit_args(req, sorted(ranks))
        with live.lock:
            st = self._load(req)
            if st.torn_down:
                return
            live.cached = None
            live.relaunching.update(ranks)
            try:
                if not st.managed:
                    found = self.client.call("status", cluster=req.cluster_name)
                    op = "exec" if (found["cluster"] or {}).get("status") == "UP" else "launch"
                else:
                    op = "launch"  # a new managed job limited to these ranks
                submitted = self.client.call(op, **args)
            except SkyError as e:
                live.relaunching.difference_update(ranks)
                self._fail(req, st, e, f"relaunch of nodes {ranks}")
                return
        log.info("%s: relaunching nodes %s on %s (%s)", req.name, ranks, req.cluster_name, op)
        try:
            result = self._wait(req, submitted["request_id"])
        except SkyError as e:
            with live.lock:
                live.relaunching.difference_update(ranks)
                if not live.cancelled.is_set():
                    self._fail(req, self._load(req), e, f"relaunch of nodes {ranks}")
            return
        with live.lock:
            live.relaunching.difference_update(ranks)
            live.cached = None
            st = self._load(req)
            self._record_jobs(st, result, sorted(ranks))
            self._save(req, st)

    def poll(self, req: LaunchRequest) -> LaunchStatus:
        live = self._l(req)
        n = req.spec.nodes
        with live.lock:
            st = self._load(req)
            launching = live.launching
            cached = live.cached
        if st.failure:
            msg, reason = st.failure["message"], st.failure["reason"]
            return LaunchStatus("Failed", [NodeState(r, "Failed", msg) for r in range(n)], msg, reason)
        if st.torn_down:
            return LaunchStatus("Gone", [NodeState(r, "Lost", "torn down") for r in range(n)], "torn down")
        if launching:
            progress = self._launch_progress(req)
            return LaunchStatus("Launching", [NodeState(r, "Launching", progress) for r in range(n)], progress)
        if not st.launched:
            return LaunchStatus("Gone", [NodeState(r, "Pending") for r in range(n)], "not launched")
        if cached and time.monotonic() - cached[0] < self.poll_interval:
            return cached[1]
        try:
            status = self._poll_managed(req, st) if st.managed else self._poll_cluster(req, st)
        except SkyError as e:
            # SkyPilot unreachable for a moment: report the last view, do not fail the migration.
            msg = self.redact(f"SkyPilot status unavailable: {e.message}")
            log.warning("%s: %s", req.name, msg)
            prev = cached[1] if cached else LaunchStatus("Running", [NodeState(r, "Running") for r in range(n)])
            return LaunchStatus(prev.phase, prev.nodes, msg, prev.reason)
        with live.lock:
            relaunching = set(live.relaunching)
            live.cached = None if relaunching else (time.monotonic(), status)
        if relaunching:  # nodes being started again are Launching, whatever their old job says
            status.nodes = [
                NodeState(x.rank, "Launching", "relaunching") if x.rank in relaunching else x for x in status.nodes
            ]
            status = self._status(req, status.nodes, None)
        return status

    def _launch_progress(self, req: LaunchRequest) -> str:
        try:
            found = self.client.call("status", cluster=req.cluster_name)
        except SkyError:
            return ""
        c = found.get("cluster")
        return self.redact(f"cluster {c['status']}: {c.get('reason') or 'provisioning'}") if c else "provisioning"

    @staticmethod
    def _latest_per_rank(st: _State, n: int) -> dict[int, int | None]:
        """The newest of our jobs that runs each rank."""
        owner: dict[int, int | None] = dict.fromkeys(range(n))
        for jid in sorted(int(j) for j in st.jobs):
            ranks = st.jobs[str(jid)]
            for r in range(n) if ranks is None else ranks:
                if 0 <= r < n:
                    owner[r] = jid
        return owner

    def _nodes_from_jobs(
        self, req: LaunchRequest, st: _State, jobs: dict[int, dict[str, Any]], lost_msg: str | None
    ) -> tuple[list[NodeState], dict[str, str] | None]:
        n = req.spec.nodes
        nodes: list[NodeState] = []
        failure: dict[str, str] | None = None
        for rank, jid in self._latest_per_rank(st, n).items():
            job = jobs.get(jid) if jid is not None else None
            if job is None:
                nodes.append(NodeState(rank, "Lost", lost_msg or f"SkyPilot job {jid} is gone"))
                continue
            s = job["status"]
            where = f"SkyPilot job {jid} {s}"
            phase = _JOB_PHASE.get(s)
            if phase is not None and lost_msg and phase != "Succeeded":
                nodes.append(NodeState(rank, "Lost", f"{where}; {lost_msg}"))
            elif phase is not None:
                detail = (
                    f"recovering after preemption (recoveries: {job.get('recovery_count', 0)})"
                    if s == "RECOVERING"
                    else ""
                )
                nodes.append(NodeState(rank, phase, detail or where))
            else:
                detail = job.get("failure_reason") or f"see `sky logs {req.cluster_name} {jid}`"
                nodes.append(NodeState(rank, "Failed", self.redact(f"{where}: {detail}")))
                if s == "FAILED_SETUP":
                    failure = {
                        "reason": "SetupFailed",
                        "message": self.redact(f"node setup failed ({where}): {detail}"),
                    }
                elif s in _PROVISIONING_FAILURES:
                    failure = {"reason": "ProvisioningFailed", "message": self.redact(f"{where}: {detail}")}
                elif s == "FAILED_CONTROLLER":
                    failure = {"reason": "SkyPilotControllerFailed", "message": self.redact(f"{where}: {detail}")}
        return nodes, failure

    def _status(self, req: LaunchRequest, nodes: list[NodeState], failure: dict[str, str] | None) -> LaunchStatus:
        if failure:
            with self._l(req).lock:
                st = self._load(req)
                st.failure = failure
                self._save(req, st)
            return LaunchStatus("Failed", nodes, failure["message"], failure["reason"])
        phases = {x.phase for x in nodes}
        if phases <= {"Succeeded", "Failed", "Lost"}:
            return LaunchStatus("Finished", nodes, "every node's job ended")
        if phases & {"Launching", "Pending"}:
            return LaunchStatus("Launching", nodes, "nodes starting")
        return LaunchStatus("Running", nodes)

    def _poll_cluster(self, req: LaunchRequest, st: _State) -> LaunchStatus:
        found = self.client.call("status", cluster=req.cluster_name)
        cluster = found.get("cluster")
        if cluster is None:
            msg = f"cluster {req.cluster_name} is gone (preempted, autostopped or deleted outside skymigrate)"
            return self._status(req, [NodeState(r, "Lost", msg) for r in range(req.spec.nodes)], None)
        jobs = {int(j["job_id"]): j for j in found.get("jobs") or []}
        lost = None
        if cluster["status"] != "UP":
            lost = self.redact(f"cluster {cluster['status']}: {cluster.get('reason') or 'a node is unhealthy'}")
        nodes, failure = self._nodes_from_jobs(req, st, jobs, lost)
        return self._status(req, nodes, failure)

    def _poll_managed(self, req: LaunchRequest, st: _State) -> LaunchStatus:
        ids = [int(j) for j in st.jobs]
        found = self.client.call("jobs_status", name=req.cluster_name, job_ids=ids)
        jobs = {int(j["job_id"]): j for j in found["jobs"]}
        nodes, failure = self._nodes_from_jobs(req, st, jobs, None)
        return self._status(req, nodes, failure)

    def wait(self, req: LaunchRequest, timeout: float) -> None:
        time.sleep(timeout)  # jobs end on remote machines: nothing to watch between polls

    def teardown(self, req: LaunchRequest) -> None:
        """Cancel a launch in flight, then release every machine; retried, raises if SkyPilot keeps failing."""
        live = self._l(req)
        with live.lock:
            st = self._load(req)
            st.torn_down = True
            self._save(req, st)
            live.cancelled.set()
            live.cached = None
            request_id = st.request_id if live.launching else None
            cancels = list(live.cancels)
        if request_id:
            try:
                self.client.call("cancel_request", request_id=request_id)
            except SkyError as e:
                log.warning("%s: cancelling SkyPilot request %s: %s", req.name, request_id, e.message)
            for cancel in cancels:  # the waiting runner: SkyPilot already stopped the request
                cancel()
        for attempt in range(1, self.teardown_attempts + 1):
            try:
                if st.managed:
                    ids = [int(j) for j in st.jobs]  # none yet if the launch was cancelled: cancel by name
                    self.client.call(
                        "jobs_cancel",
                        name=req.cluster_name,
                        job_ids=ids,
                        timeout=LONG_CALL_TIMEOUT_S,
                        log_file=self.log_file(req),
                    )
                else:
                    self.client.call(
                        "down", cluster=req.cluster_name, timeout=LONG_CALL_TIMEOUT_S, log_file=self.log_file(req)
                    )
                log.info("%s: SkyPilot %s torn down", req.name, req.cluster_name)
                return
            except SkyError as e:
                if e.kind == "missing":
                    return  # nothing left to tear down
                log.warning(
                    "%s: tearing down %s failed (attempt %d/%d): %s",
                    req.name, req.cluster_name, attempt, self.teardown_attempts, e.message,
                )  # fmt: skip
                if attempt == self.teardown_attempts:
                    raise RuntimeError(
                        f"SkyPilot could not tear down {req.cluster_name} after {attempt} attempts: {e.message}; "
                        f"check `sky status {req.cluster_name}` and run `sky down {req.cluster_name}`"
                    ) from None
                time.sleep(self.teardown_backoff * 2 ** (attempt - 1))
