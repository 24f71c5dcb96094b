"""The SkyPilot side of the SkyPilot launcher: runs in the isolated SkyPilot environment.

skypilot pins click<8.2 and kopf needs click>=8.2, so ``sky`` never loads into the operator's
process. The launcher runs this file with the SkyPilot environment's Python and exchanges one JSON
object per line: ``{"id", "op", ...}`` on stdin, ``{"id", "ok", "result" | "error"}`` on stdout.
Whatever SkyPilot prints goes to stderr, so it can never corrupt the protocol.

Credentials arrive on stdin only (the pipe), become the task's ``secrets:`` in memory, and are
never echoed back. Imports nothing but the standard library and ``sky``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _text(e: BaseException) -> str:
    msg = ANSI.sub("", str(e)).strip() or type(e).__name__
    history = getattr(e, "failover_history", None) or []
    extra = [ANSI.sub("", str(h)).strip() for h in history[-3:] if str(h).strip()]
    if extra:
        msg += " (tried: " + "; ".join(x.splitlines()[0][:300] for x in extra) + ")"
    return msg[:2000]


def classify(e: BaseException) -> str:
    """What the launcher should make of an error: missing, cancelled, api, provisioning, invalid, not_up, error."""
    from sky import exceptions as ex

    if isinstance(e, ex.ClusterDoesNotExist):
        return "missing"
    if isinstance(e, ex.RequestCancelled):
        return "cancelled"
    api = (ex.ApiServerConnectionError, ex.ApiServerAuthenticationError, ex.APIVersionMismatchError)
    if isinstance(e, (*api, ex.ServerTemporarilyUnavailableError, ConnectionError)):
        return "api"
    provisioning = (
        ex.ResourcesUnavailableError,
        ex.NoCloudAccessError,
        ex.ProvisionPrechecksError,
        ex.InvalidCloudCredentials,
        ex.InvalidCloudConfigs,
        ex.CloudUserIdentityError,
        ex.ResourcesMismatchError,
        ex.ProvisionUnsupportedError,
        ex.ClusterOwnerIdentityMismatchError,
        ex.NotSupportedError,
        ex.ManagedJobReachedMaxRetriesError,
    )
    if isinstance(e, provisioning):
        return "provisioning"
    if isinstance(e, ex.ClusterNotUpError):
        return "not_up"
    if isinstance(e, (ex.InvalidSkyPilotConfigError, ex.InvalidClusterNameError, ValueError)):
        return "invalid"
    return "error"


def build_task(msg: dict[str, Any]) -> Any:
    """sky.Task from the launcher's task dict plus its secrets, through SkyPilot's own parser."""
    import sky
    from sky.utils import common_utils

    config = dict(msg["task"])
    if msg.get("secrets"):
        config["secrets"] = dict(msg["secrets"])
    common_utils.check_cluster_name_is_valid(msg.get("cluster") or config.get("name"))
    return sky.Task.from_yaml_config(config)


def _enum(v: Any) -> Any:
    return getattr(v, "value", v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return _enum(v) if hasattr(v, "value") else str(v)


def op_validate(msg: dict[str, Any]) -> Any:
    """Everything SkyPilot checks before provisioning, offline: the client's parse and file checks,
    then the API server's own decode and ``dag.validate`` of the YAML the client would send."""
    import sky
    from sky.utils import dag_utils

    task = build_task(msg)
    task.expand_and_validate_workdir()
    task.expand_and_validate_file_mounts()
    sent = dag_utils.dump_dag_to_yaml_str(dag_utils.convert_entrypoint_to_dag(task))
    dag = dag_utils.load_dag_from_yaml_str(sent)  # what the API server does with a launch body
    if msg.get("managed"):
        dag_utils.fill_default_config_in_dag_for_job_launch(dag)
    dag.resolve_and_validate_volumes()
    dag.validate(skip_file_mounts=True, skip_workdir=True)
    (received,) = dag.tasks
    assert isinstance(received, sky.Task)
    return {
        "name": received.name,
        "num_nodes": received.num_nodes,
        "resources": [r.to_yaml_config() for r in received.resources],
        "envs": dict(received.envs),
        "secrets": sorted(received.secrets),  # names only, never values
        "file_mounts": dict(received.file_mounts or {}),
        "setup": received.setup,
        "run": received.run,
    }


def op_launch(msg: dict[str, Any]) -> Any:
    import sky

    task = build_task(msg)
    if msg.get("managed"):
        rid = sky.jobs.launch(task, name=msg["cluster"])
    else:
        rid = sky.launch(task, cluster_name=msg["cluster"], retry_until_up=bool(msg.get("retry_until_up")))
    return {"request_id": str(rid)}


def op_exec(msg: dict[str, Any]) -> Any:
    import sky

    return {"request_id": str(sky.exec(build_task(msg), cluster_name=msg["cluster"]))}


def op_wait(msg: dict[str, Any]) -> Any:
    """Block until a request finishes; its log goes to stderr (the launcher's log file)."""
    import sky

    rid = msg["request_id"]
    result = sky.stream_and_get(rid) if msg.get("stream", True) else sky.get(rid)
    if isinstance(result, tuple):  # launch: (job_id, handle); jobs.launch: (job_ids, handle)
        first = result[0]
        return {"job_ids": [int(j) for j in first]} if isinstance(first, list) else {"job_id": first}
    return {}


def op_status(msg: dict[str, Any]) -> Any:
    import sky
    from sky import exceptions as ex
    from sky.utils import common

    cluster = msg["cluster"]
    records = sky.get(sky.status([cluster], refresh=common.StatusRefreshMode.AUTO))
    rec = next((r for r in records if r["name"] == cluster), None)
    if rec is None:
        return {"cluster": None, "jobs": None}
    info = {
        "status": _enum(rec["status"]),
        "nodes": rec.get("nodes"),
        "reason": rec.get("init_status_reason") or rec.get("last_event"),
    }
    jobs = None
    if info["status"] == "UP":
        try:
            queue = sky.get(sky.queue(cluster, skip_finished=False))
            jobs = [{"job_id": j["job_id"], "status": _enum(j["status"])} for j in queue]
        except ex.ClusterNotUpError:
            jobs = None
    return {"cluster": info, "jobs": jobs}


def op_jobs_status(msg: dict[str, Any]) -> Any:
    import sky
    from sky import exceptions as ex

    ids = msg.get("job_ids") or None
    try:
        out = sky.get(sky.jobs.queue_v2(refresh=False, skip_finished=False, job_ids=ids))
    except ex.ClusterNotUpError:  # no jobs controller yet (or any more): no managed jobs
        return {"jobs": []}
    records = out[0] if isinstance(out, tuple) else out
    jobs = []
    for r in records:
        if r["job_name"] != msg["name"] and (ids is None or r["job_id"] not in ids):
            continue
        jobs.append(
            {
                "job_id": r["job_id"],
                "status": _enum(r["status"]),
                "failure_reason": r.get("failure_reason"),
                "recovery_count": r.get("recovery_count") or 0,
                "details": r.get("details"),
            }
        )
    return {"jobs": jobs}


def op_down(msg: dict[str, Any]) -> Any:
    import sky

    sky.stream_and_get(sky.down(msg["cluster"]))
    return {"existed": True}


def op_jobs_cancel(msg: dict[str, Any]) -> Any:
    import sky

    ids = msg.get("job_ids") or None
    sky.stream_and_get(sky.jobs.cancel(job_ids=ids) if ids else sky.jobs.cancel(name=msg["name"]))
    return {}


def op_cancel_request(msg: dict[str, Any]) -> Any:
    import sky

    return {"cancelled": _jsonable(sky.get(sky.api_cancel(msg["request_id"], silent=True)))}


def op_version(msg: dict[str, Any]) -> Any:
    import sky

    return {"version": sky.__version__, "endpoint": os.environ.get("SKYPILOT_API_SERVER_ENDPOINT", "")}


OPS = {
    "validate": op_validate,
    "launch": op_launch,
    "exec": op_exec,
    "wait": op_wait,
    "status": op_status,
    "jobs_status": op_jobs_status,
    "down": op_down,
    "jobs_cancel": op_jobs_cancel,
    "cancel_request": op_cancel_request,
    "version": op_version,
}


def handle(msg: dict[str, Any]) -> dict[str, Any]:
    fn = OPS.get(msg.get("op", ""))
    if fn is None:
        return {"id": msg.get("id"), "ok": False, "error": {"kind": "invalid", "type": "UnknownOp", "message": "?"}}
    try:
        return {"id": msg.get("id"), "ok": True, "result": fn(msg)}
    except BaseException as e:  # every failure becomes an answer; SystemExit/KeyboardInterrupt included
        if isinstance(e, KeyboardInterrupt):
            raise
        return {
            "id": msg.get("id"),
            "ok": False,
            "error": {"kind": classify(e), "type": type(e).__name__, "message": _text(e)},
        }


def main() -> int:
    # Run by path, this file's folder heads sys.path: its sibling modules must not shadow anything.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    # The protocol owns the real stdout; everything else (SkyPilot's output, prints) goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError as e:
            out.write(
                json.dumps({"id": None, "ok": False, "error": {"kind": "invalid", "type": "JSON", "message": str(e)}})
                + "\n"
            )
            continue
        out.write(json.dumps(handle(msg)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
