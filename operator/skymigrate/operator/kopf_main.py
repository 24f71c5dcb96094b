"""The kopf operator: one daemon per Migration drives it through the shared Driver; status is patched
through the status subresource, events go through kopf, and deletion tears the agents down.

Blocking work (S3 listing, launching, reading heartbeats) runs in threads, so one slow migration never
stalls the event loop or the others.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from prometheus_client import CollectorRegistry, start_http_server
from pydantic import ValidationError
from skymigrate.core import logs
from skymigrate.core.credentials import Credentials, CredentialsError, resolve_local
from skymigrate.core.metrics import OperatorMetrics
from skymigrate.core.plan import CONFIG, RunConfig
from skymigrate.core.spec import MUTABLE_FIELDS, CredentialsSpec, MigrationSpec
from skymigrate.core.status import TERMINAL, condition
from skymigrate.operator.driver import Creds, Driver, Identity
from skymigrate.operator.launchers import get_launcher

GROUP, VERSION, PLURAL = "skymigrate.io", "v1alpha1", "migrations"
log = logging.getLogger("skymigrate.operator")

REGISTRY = CollectorRegistry()
METRICS = OperatorMetrics(REGISTRY)
DRIVERS: dict[str, Driver] = {}


# --- Kubernetes plumbing ------------------------------------------------------------------------
def _load_kube_config() -> None:
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    k8s.CustomObjectsApi().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


def read_secret_creds(cs: CredentialsSpec, namespace: str, side: str) -> Credentials:
    """Credentials from a Secret; errors name the Secret and key, never a value."""
    if cs.secret_ref is None:
        return resolve_local(cs, side)  # type: ignore[arg-type]
    ref = cs.secret_ref
    ns = ref.namespace or namespace
    try:
        secret = k8s.CoreV1Api().read_namespaced_secret(ref.name, ns)
    except k8s.ApiException as e:
        raise CredentialsError(
            f"{side} credentials: cannot read Secret {ns}/{ref.name} ({e.status} {e.reason})"
        ) from None
    data = secret.data or {}

    def get(key: str | None) -> str | None:
        if key is None:
            return None
        if key not in data:
            raise CredentialsError(f"{side} credentials: Secret {ns}/{ref.name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    return Credentials(get(ref.access_key_id_key), get(ref.secret_access_key_key), get(ref.session_token_key))


def with_operator_defaults(spec: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Fill what the manifest left out with this installation's defaults (the chart's values)."""
    env = os.environ if environ is None else environ
    out = dict(spec)
    if "launcher" not in out and env.get("SKYMIGRATE_DEFAULT_LAUNCHER"):
        out["launcher"] = {"type": env["SKYMIGRATE_DEFAULT_LAUNCHER"]}
    if "stateStore" not in out and env.get("SKYMIGRATE_STATE_URL"):
        store = {"url": env["SKYMIGRATE_STATE_URL"], "fromOperator": True}
        for key, var in (("endpoint", "SKYMIGRATE_STATE_ENDPOINT"), ("region", "SKYMIGRATE_STATE_REGION")):
            if env.get(var):
                store[key] = env[var]
        out["stateStore"] = store
    return out


def parse_spec(spec: Mapping[str, Any]) -> tuple[MigrationSpec, bool]:
    """The validated spec, and whether its state store is the operator's own (credentials from its env)."""
    full = with_operator_defaults(spec)
    store = dict(full.get("stateStore") or {})
    from_operator = bool(store.pop("fromOperator", False))
    if "stateStore" in full:
        full["stateStore"] = store
    return MigrationSpec.model_validate(full), from_operator


def resolve_creds(spec: MigrationSpec, namespace: str, operator_state: bool = False) -> Creds:
    state = None
    if spec.state_store.url.startswith("s3://"):
        if operator_state:
            state = Credentials.from_env("state")
        else:
            state = read_secret_creds(spec.state_store.credentials, namespace, "state")
    creds = Creds(
        read_secret_creds(spec.source.credentials, namespace, "source"),
        read_secret_creds(spec.target.credentials, namespace, "target"),
        state,
    )
    logs.add_secrets(creds.secret_values())
    return creds


# --- handlers -----------------------------------------------------------------------------------
@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "skymigrate.io/finalizer"
    # Keep kopf's bookkeeping out of .status, which is ours and schema-checked.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="skymigrate.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="skymigrate.io", key="last-spec")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 60
    _load_kube_config()


def _fail_early(body: Any, namespace: str, name: str, generation: int, reason: str, message: str) -> None:
    now = time.time()
    conds = condition([], "Ready", False, reason, message, now, generation)
    conds = condition(conds, "Failed", True, reason, message, now, generation)
    patch_status(namespace, name, {"phase": "Failed", "message": message, "observedGeneration": generation,
                                   "conditions": conds})  # fmt: skip
    kopf.event(body, type="Warning", reason=reason, message=message)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=60.0)
async def run_migration(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, name: str, namespace: str | None,
    uid: str, stopped: kopf.DaemonStopped, **_: Any,
) -> None:  # fmt: skip
    namespace = namespace or "default"
    if status.get("phase") in TERMINAL or meta.get("deletionTimestamp"):
        return
    generation = int(meta.get("generation") or 1)
    try:
        mspec, operator_state = parse_spec(spec)
    except ValidationError as e:
        problems = "; ".join(f"spec.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        await asyncio.to_thread(_fail_early, body, namespace, name, generation, "InvalidSpec", problems)
        return
    try:
        creds = await asyncio.to_thread(resolve_creds, mspec, namespace, operator_state)
    except CredentialsError as e:
        await asyncio.to_thread(_fail_early, body, namespace, name, generation, "CredentialsNotFound", str(e))
        return
    events: list[tuple[str, str, str]] = []
    driver = Driver(
        Identity(namespace, name, uid, generation), mspec, creds, get_launcher(mspec.launcher.type),
        status=dict(status), metrics=METRICS, on_event=lambda t, r, m: events.append((t, r, m)),
    )  # fmt: skip
    DRIVERS[uid] = driver
    interval = min(mspec.progress.cluster_interval_seconds, 60.0)
    tick = min(interval, mspec.progress.node_interval_seconds, 5.0)
    last_patch, last_phase = 0.0, ""
    try:
        while not stopped:
            phase_before = driver.phase
            st = await asyncio.to_thread(driver.step)
            for kind, reason, message in events:
                kopf.event(body, type=kind, reason=reason, message=message)
            events.clear()
            now = time.monotonic()
            if driver.phase != last_phase or now - last_patch >= interval or driver.done:
                await asyncio.to_thread(patch_status, namespace, name, st)
                last_patch, last_phase = now, driver.phase
            if driver.done:
                return
            if driver.phase == phase_before:
                await stopped.wait(tick)
    finally:
        if DRIVERS.get(uid) is driver and driver.done:
            DRIVERS.pop(uid, None)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def spec_changed(
    body: kopf.Body, diff: kopf.Diff, new: Any, meta: kopf.Meta, status: kopf.Status, uid: str, **_: Any
) -> None:
    changed = {d[1][0] for d in diff if d[1]}
    fixed = sorted(changed - MUTABLE_FIELDS)
    driver = DRIVERS.get(uid)
    if fixed and status.get("phase") not in (None, "Pending"):
        kopf.event(body, type="Warning", reason="SpecChangeIgnored",
                   message=f"{', '.join(fixed)} cannot change once a migration has started; "
                   f"only {', '.join(sorted(MUTABLE_FIELDS))} can. Create a new Migration instead.")  # fmt: skip
        return
    if driver is None or not changed & MUTABLE_FIELDS:
        return
    try:
        mspec = parse_spec(new)[0]
    except ValidationError as e:
        kopf.event(body, type="Warning", reason="InvalidSpec", message=str(e)[:500])
        return
    await asyncio.to_thread(apply_mutable_change, driver, mspec, int(meta.get("generation") or 1))
    kopf.event(body, type="Normal", reason="SpecUpdated",
               message=f"applied {', '.join(sorted(changed & MUTABLE_FIELDS))}; agents restart and resume from their journals")  # fmt: skip


def apply_mutable_change(driver: Driver, spec: MigrationSpec, generation: int) -> None:
    """New concurrency/debug/retry/progress settings reach agents through config.json and a restart."""
    fields = ("concurrency", "debug", "retry", "progress", "delete_state_on_delete")
    merged = driver.spec.model_copy(update={k: getattr(spec, k) for k in fields})
    driver.spec = merged
    driver.ident.generation = generation
    driver.request = driver.request.__class__(**{**driver.request.__dict__, "spec": merged})
    driver.store.put(CONFIG, RunConfig(namespace=driver.ident.namespace, name=driver.ident.name,
                                       uid=driver.ident.uid, spec=merged).model_dump_json().encode())  # fmt: skip
    if driver.phase == "Running":
        driver.launcher.teardown(driver.request)
        driver.launcher.launch(driver.request)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_migration(
    spec: kopf.Spec, name: str, namespace: str | None, uid: str, status: kopf.Status, **_: Any
) -> None:
    namespace = namespace or "default"
    driver = DRIVERS.pop(uid, None)
    try:
        mspec, operator_state = (driver.spec, False) if driver else parse_spec(spec)
    except ValidationError:
        return  # never got far enough to start anything
    if driver is None:
        try:
            creds = await asyncio.to_thread(resolve_creds, mspec, namespace, operator_state)
        except CredentialsError:
            creds = Creds(Credentials(anonymous=True), Credentials(anonymous=True), None)
        driver = Driver(
            Identity(namespace, name, uid), mspec, creds, get_launcher(mspec.launcher.type), status=dict(status)
        )
    await asyncio.to_thread(driver.cancel, mspec.delete_state_on_delete)
    METRICS.forget(namespace, name)
    log.info("%s/%s deleted: agents stopped", namespace, name)


# --- entry point --------------------------------------------------------------------------------
def run(
    *,
    namespaces: list[str],
    all_namespaces: bool,
    liveness: str | None,
    metrics_port: int,
    metrics_addr: str,
    peering: str | None,
    verbose: bool,
    relay_agent_metrics: bool = False,
) -> int:
    verbose = verbose or os.environ.get("SKYMIGRATE_LOG_LEVEL", "").lower() == "debug"
    logs.setup(debug=verbose)
    if relay_agent_metrics:
        from skymigrate.operator.agent_metrics import AgentMetricsRelay, local_agent_urls

        REGISTRY.register(AgentMetricsRelay(lambda: local_agent_urls(list(DRIVERS.values()))))
    if metrics_port >= 0:
        start_http_server(metrics_port, addr=metrics_addr, registry=REGISTRY)
        log.info("operator metrics on http://%s:%d/metrics", metrics_addr, metrics_port)
    if not namespaces and not all_namespaces:
        all_namespaces = True
    kopf.run(
        clusterwide=all_namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        standalone=peering is None,
        peering_name=peering,
    )
    return 0
