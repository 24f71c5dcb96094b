"""SkyPilot for tests: the real client environment, and a fake standing exactly at the SDK functions.

``sky_python()`` builds (once, cached) the isolated SkyPilot environment with
scripts/setup-skypilot-env.sh. ``catalog_home()`` gives SkyPilot a HOME with an excerpt of its real
Nebius catalog, since its resource validation reads the catalog and the tests have no GitHub.

Run as a script with the SkyPilot environment's Python, this file IS the launcher's runner: it
replaces ``sky.launch``, ``sky.status``, ``sky.get``, ... (the SDK calls that would reach an API
server and a cloud) with a fake whose state lives in the JSON file named by $SKYFAKE_STATE, then
runs the real sky_runner.main(). Everything in front of those calls is real SkyPilot: the task is
parsed by ``sky.Task.from_yaml_config`` and round-tripped and validated as the API server would.
Secret values are never stored, only their sha256.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup-skypilot-env.sh"
LAUNCHERS = REPO / "operator" / "skymigrate" / "operator" / "launchers"
THIS = Path(__file__).resolve()

_lock = threading.Lock()
_python: str | None = None

# Rows of skypilot-org/skypilot-catalog catalogs/v8/nebius/vms.csv (CPU presets only).
NEBIUS_CATALOG = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice
cpu-d3_4vcpu-16gb,,0,4,16,0.0992,eu-north1,,
cpu-d3_8vcpu-32gb,,0,8,32,0.1984,eu-north1,,
cpu-d3_16vcpu-64gb,,0,16,64,0.3968,eu-north1,,
cpu-d3_32vcpu-128gb,,0,32,128,0.7936,eu-north1,,
cpu-e2_8vcpu-32gb,,0,8,32,0.1984,eu-north1,,
cpu-d3_8vcpu-32gb,,0,8,32,0.1984,us-central1,,
cpu-d3_16vcpu-64gb,,0,16,64,0.3968,us-central1,,
cpu-d3_32vcpu-128gb,,0,32,128,0.7936,us-central1,,
"""


def sky_python() -> str:
    """The SkyPilot environment's python (scripts/setup-skypilot-env.sh; a no-op once built)."""
    global _python
    with _lock:
        if _python is None:
            out = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=1200, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"{SETUP} failed:\n{out.stderr[-3000:]}")
            _python = out.stdout.strip().splitlines()[-1]
        return _python


def catalog_home(home: Path) -> Path:
    """A HOME where SkyPilot finds a fresh Nebius catalog (so it never tries to download one)."""
    cat = home / ".sky" / "catalogs" / "v8" / "nebius" / "vms.csv"
    cat.parent.mkdir(parents=True, exist_ok=True)
    cat.write_text(NEBIUS_CATALOG)
    return home


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- the shared state file -----------------------------------------------------------------------
EMPTY: dict[str, Any] = {
    "seq": 0,
    "requests": {},
    "clusters": {},
    "managed": [],
    "script": {},
    "calls": [],
    "tasks": [],
}


class FakeState:
    """The fake cloud + API server, as a JSON file shared by the test and every runner process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            self.reset()

    def reset(self) -> None:
        self.path.write_text(json.dumps(EMPTY))

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        with Path(str(self.path) + ".lock").open("w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            data = json.loads(self.path.read_text())
            yield data
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.path)

    def read(self) -> dict[str, Any]:
        with self.edit() as d:
            return json.loads(json.dumps(d))

    def script(self, **kw: Any) -> None:
        with self.edit() as d:
            d["script"].update(kw)

    def calls(self, op: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.read()["calls"] if op is None or c["op"] == op]

    def set_job(self, cluster: str, job_id: int, status: str) -> None:
        with self.edit() as d:
            for j in d["clusters"][cluster]["jobs"]:
                if j["job_id"] == job_id:
                    j["status"] = status

    def set_cluster(self, cluster: str, status: str, reason: str | None = None) -> None:
        with self.edit() as d:
            d["clusters"][cluster].update(status=status, reason=reason)

    def set_managed(self, job_id: int, status: str, **kw: Any) -> None:
        with self.edit() as d:
            for j in d["managed"]:
                if j["job_id"] == job_id:
                    j.update(status=status, **kw)

    def complete_launch(self, rid: str, cluster: str) -> None:
        """A hanging launch request finishes: the cluster is up with job 1 running."""
        with self.edit() as d:
            d["clusters"][cluster].update(
                status="UP", reason=None, jobs=[{"job_id": 1, "status": "RUNNING", "ranks": ""}]
            )
            d["requests"][rid].update(status="SUCCEEDED", result=[1, None])

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.read()):
            if time.monotonic() > deadline:
                raise TimeoutError("fake SkyPilot never reached the expected state")
            time.sleep(0.05)


# --- the fake SDK (runs inside the SkyPilot environment) -----------------------------------------
def _install_fake(state: FakeState) -> None:  # pragma: no cover - runs in the runner subprocess
    import sky
    from sky import exceptions as ex
    from sky.jobs import ManagedJobStatus
    from sky.schemas.api import responses
    from sky.skylet.job_lib import JobStatus
    from sky.utils import dag_utils, status_lib

    sync: dict[str, Any] = {}

    def validate_like_server(task: Any) -> dict[str, Any]:
        task.expand_and_validate_file_mounts()
        sent = dag_utils.dump_dag_to_yaml_str(dag_utils.convert_entrypoint_to_dag(task))
        dag = dag_utils.load_dag_from_yaml_str(sent)
        dag.validate(skip_file_mounts=True, skip_workdir=True)
        (t,) = dag.tasks
        return {
            "name": t.name,
            "num_nodes": t.num_nodes,
            "resources": [r.to_yaml_config() for r in t.resources],
            "envs": dict(t.envs),
            "secrets": {k: digest(v.get_secret_value()) for k, v in t.secrets.items()},
            "file_mounts": dict(t.file_mounts or {}),
        }

    def new_request(d: dict[str, Any], **req: Any) -> str:
        d["seq"] += 1
        rid = f"req-{d['seq']}"
        d["requests"][rid] = {"status": "SUCCEEDED", **req}
        return rid

    def next_outcome(d: dict[str, Any], key: str) -> str:
        seq = d["script"].get(key) or []
        return seq.pop(0) if seq else "ok"

    def record(op: str, **kw: Any) -> None:
        with state.edit() as d:
            d["calls"].append({"op": op, **kw})

    def launch(task: Any, cluster_name: str | None = None, **kw: Any) -> str:
        summary = validate_like_server(task)
        # What a careless log line would show: the launcher must redact it.
        plain = [v.get_secret_value() for v in task.secrets.values()]
        print(f"fake sky: env {sorted(task.secrets)} = {plain}", file=sys.stderr)
        with state.edit() as d:
            d["calls"].append({"op": "launch", "cluster": cluster_name, "kw": sorted(kw)})
            d["tasks"].append(summary)
            outcome = next_outcome(d, "launch")
            c = d["clusters"].get(cluster_name)
            if outcome == "ok":
                c = c or {"status": "INIT", "nodes": task.num_nodes, "reason": None, "jobs": []}
                jid = 1 + max([j["job_id"] for j in c["jobs"]] or [0])
                c["jobs"].append(
                    {
                        "job_id": jid,
                        "status": d["script"].get("job_status", "RUNNING"),
                        "ranks": task.envs.get("SKYMIGRATE_RANKS", ""),
                    }
                )
                c.update(status="UP", reason=None)
                d["clusters"][cluster_name] = c
                return new_request(d, op="launch", result=[jid, None])
            if outcome == "hang":
                d["clusters"][cluster_name] = c or {
                    "status": "INIT",
                    "nodes": task.num_nodes,
                    "reason": "Launching - provisioning 2 nodes",
                    "jobs": [],
                }
                return new_request(d, op="launch", status="PENDING")
            errors = {
                "no_resources": (
                    "ResourcesUnavailableError",
                    f"Failed to acquire resources in all zones in eu-north1 for {{Nebius(cpus=8+)}}: "
                    f"QuotaExceeded: vCPU quota exhausted (request carried {plain[:1]})",
                ),
                "no_cloud": ("NoCloudAccessError", "Cloud access is not set up. Run: `sky check`"),
            }
            etype, emsg = errors[outcome]
            return new_request(d, op="launch", error={"type": etype, "message": emsg})

    def exec_(task: Any, cluster_name: str | None = None, **kw: Any) -> str:
        summary = validate_like_server(task)
        with state.edit() as d:
            d["calls"].append({"op": "exec", "cluster": cluster_name})
            d["tasks"].append(summary)
            c = d["clusters"].get(cluster_name)
            if not c or c["status"] != "UP":
                return new_request(d, op="exec", error={"type": "ClusterNotUpError", "message": "not up"})
            jid = 1 + max([j["job_id"] for j in c["jobs"]] or [0])
            c["jobs"].append({"job_id": jid, "status": "RUNNING", "ranks": task.envs.get("SKYMIGRATE_RANKS", "")})
            return new_request(d, op="exec", result=[jid, None])

    def down(cluster_name: str, **kw: Any) -> str:
        with state.edit() as d:
            d["calls"].append({"op": "down", "cluster": cluster_name})
            if d["script"].get("down_failures", 0) > 0:
                d["script"]["down_failures"] -= 1
                return new_request(
                    d,
                    op="down",
                    error={"type": "RuntimeError", "message": "Failed to terminate instances: API timeout"},
                )
            if cluster_name not in d["clusters"]:
                return new_request(
                    d,
                    op="down",
                    error={"type": "ClusterDoesNotExist", "message": f"Cluster {cluster_name!r} does not exist."},
                )
            del d["clusters"][cluster_name]
            return new_request(d, op="down", result=None)

    def api_cancel(request_ids: Any = None, **kw: Any) -> str:
        ids = [request_ids] if isinstance(request_ids, str) else list(request_ids or [])
        with state.edit() as d:
            d["calls"].append({"op": "api_cancel", "ids": ids})
            for rid in ids:
                if rid in d["requests"] and d["requests"][rid]["status"] == "PENDING":
                    d["requests"][rid]["status"] = "CANCELLED"
        sync["c"] = ids
        return "c"

    def status(cluster_names: Any = None, refresh: Any = None, **kw: Any) -> str:
        d = state.read()
        record("status", cluster=list(cluster_names or []))
        out = []
        for name, c in d["clusters"].items():
            if cluster_names and name not in cluster_names:
                continue
            out.append(
                responses.StatusResponse(
                    name=name,
                    launched_at=0,
                    status=status_lib.ClusterStatus(c["status"]),
                    autostop=30,
                    to_down=True,
                    cluster_hash="h",
                    cluster_ever_up=True,
                    user_hash="u",
                    user_name="u",
                    workspace="default",
                    is_managed=False,
                    nodes=c["nodes"],
                    init_status_reason=c.get("reason"),
                )
            )
        sync["s"] = out
        return "s"

    def queue(cluster_name: str, skip_finished: bool = False, all_users: bool = False) -> str:
        c = state.read()["clusters"].get(cluster_name)
        if c is None:
            raise ex.ClusterDoesNotExist(cluster_name)
        if c["status"] != "UP":
            raise ex.ClusterNotUpError("not up", cluster_status=None)
        sync["q"] = [
            responses.ClusterJobRecord(
                job_id=j["job_id"],
                job_name=cluster_name,
                username="u",
                user_hash="u",
                submitted_at=0.0,
                resources="-",
                status=JobStatus(j["status"]),
                log_path="-",
            )
            for j in c["jobs"]
        ]
        return "q"

    def jobs_launch(task: Any, name: str | None = None, **kw: Any) -> str:
        summary = validate_like_server(task)
        dag = dag_utils.convert_entrypoint_to_dag(task)
        dag_utils.fill_default_config_in_dag_for_job_launch(dag)  # what `sky jobs launch` does
        with state.edit() as d:
            d["calls"].append({"op": "jobs.launch", "name": name})
            d["tasks"].append(summary)
            jid = 1 + max([j["job_id"] for j in d["managed"]] or [0])
            d["managed"].append(
                {
                    "job_id": jid,
                    "job_name": name,
                    "status": d["script"].get("managed_status", "PENDING"),
                    "failure_reason": d["script"].get("managed_failure"),
                    "recovery_count": 0,
                }
            )
            return new_request(d, op="jobs.launch", result=[[jid], None])

    def jobs_queue_v2(refresh: bool, skip_finished: bool = False, job_ids: Any = None, **kw: Any) -> str:
        d = state.read()
        record("jobs.queue", job_ids=job_ids)
        recs = [
            responses.ManagedJobRecord(
                job_id=j["job_id"],
                job_name=j["job_name"],
                status=ManagedJobStatus(j["status"]),
                failure_reason=j.get("failure_reason"),
                recovery_count=j.get("recovery_count", 0),
            )
            for j in d["managed"]
            if not job_ids or j["job_id"] in job_ids
        ]
        sync["jq"] = (recs, len(recs), {}, len(recs))
        return "jq"

    def jobs_cancel(name: str | None = None, job_ids: Any = None, **kw: Any) -> str:
        with state.edit() as d:
            d["calls"].append({"op": "jobs.cancel", "name": name, "job_ids": list(job_ids or [])})
            for j in d["managed"]:
                if (job_ids and j["job_id"] in job_ids) or (not job_ids and j["job_name"] == name):
                    j["status"] = "CANCELLED"
            return new_request(d, op="jobs.cancel", result=None)

    def get(request_id: str, **kw: Any) -> Any:
        if request_id in sync:
            return sync.pop(request_id)
        while True:
            req = state.read()["requests"][request_id]
            if req["status"] == "PENDING":
                time.sleep(0.05)
                continue
            if req["status"] == "CANCELLED":
                raise ex.RequestCancelled(
                    f"Current 'sky.launch' request ({request_id}) is cancelled by another process."
                )
            if err := req.get("error"):
                import builtins

                cls = getattr(ex, err["type"], None) or getattr(builtins, err["type"], RuntimeError)
                raise cls(err["message"])
            r = req.get("result")
            return tuple(r) if isinstance(r, list) else r

    sky.launch, sky.exec, sky.down, sky.api_cancel = launch, exec_, down, api_cancel
    sky.status, sky.queue, sky.get = status, queue, get
    sky.stream_and_get = lambda request_id=None, **kw: get(request_id)
    sky.jobs.launch, sky.jobs.queue_v2, sky.jobs.cancel = jobs_launch, jobs_queue_v2, jobs_cancel


if __name__ == "__main__":  # pragma: no cover - the launcher runs this with the SkyPilot environment's python
    import importlib.util

    spec = importlib.util.spec_from_file_location("sky_runner", LAUNCHERS / "sky_runner.py")
    assert spec and spec.loader
    sky_runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sky_runner)
    _install_fake(FakeState(Path(os.environ["SKYFAKE_STATE"])))
    sys.exit(sky_runner.main())
