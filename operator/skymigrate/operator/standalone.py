"""`skymigrate run`: the operator's reconcile logic without Kubernetes; status is printed, not patched."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import IO, Any

import yaml
from pydantic import ValidationError
from skymigrate.core import logs
from skymigrate.core.credentials import CredentialsError, resolve_local
from skymigrate.core.plan import REPORT
from skymigrate.core.spec import MigrationSpec, load_manifest
from skymigrate.operator.driver import Creds, Driver, Identity
from skymigrate.operator.launchers import get_launcher
from skymigrate.operator.view import View, final_statistics

log = logging.getLogger("skymigrate.operator")


class ManifestError(ValueError):
    pass


def read_manifest(path: Path) -> tuple[dict[str, Any], MigrationSpec]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Migration"]
    except (OSError, yaml.YAMLError) as e:
        raise ManifestError(f"{path}: cannot read: {e}") from e
    if len(docs) != 1:
        raise ManifestError(f"{path}: expected exactly one Migration document, found {len(docs)}")
    try:
        return load_manifest(docs[0])
    except ValidationError as e:
        problems = "; ".join(f"spec.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ManifestError(f"{path}: invalid Migration: {problems}") from None
    except ValueError as e:
        raise ManifestError(f"{path}: {e}") from None


def local_creds(spec: MigrationSpec) -> Creds:
    state = None
    if spec.state_store.url.startswith("s3://"):
        state = resolve_local(spec.state_store.credentials, "state")
    return Creds(
        resolve_local(spec.source.credentials, "source"), resolve_local(spec.target.credentials, "target"), state
    )


def local_uid(namespace: str, name: str) -> str:
    """Stable across runs of the same manifest, so running it again resumes instead of starting over."""
    return "local-" + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:12]


def run(
    path: Path,
    *,
    launcher: str | None = None,
    tty: bool | None = None,
    events: IO[str] | None = None,
    tick: float = 1.0,
) -> int:
    """Run a migration to the end. Exit 0 Succeeded, 1 Failed, 2 bad input, 130 interrupted (resumable)."""
    meta, spec = read_manifest(path)
    try:
        creds = local_creds(spec)
    except CredentialsError as e:
        raise ManifestError(str(e)) from None
    logs.setup(debug=spec.debug, secrets=creds.secret_values())
    ns = meta.get("namespace", "default")
    ident = Identity(ns, meta["name"], meta.get("uid") or local_uid(ns, meta["name"]))
    kind = launcher or spec.launcher.type
    with View(meta["name"], tty=tty, events=events) as view:
        driver = Driver(ident, spec, creds, get_launcher(kind), on_event=view.event)
        try:
            while True:
                phase = driver.phase
                st = driver.step()
                view.update(st)
                if driver.done:
                    break
                if driver.phase == phase:  # no transition: wait for the agents
                    driver.launcher.wait(driver.request, tick)
        except KeyboardInterrupt:
            driver.launcher.teardown(driver.request)
            view.event(
                "Warning", "Interrupted", f"agents stopped; state kept at {driver.state_root}: run again to resume"
            )
            return 130
    raw = driver.store.get(REPORT)
    if raw:
        final_statistics(json.loads(raw))
    print(f"{meta['name']}: {driver.phase}: {driver.message}")
    return 0 if driver.phase == "Succeeded" else 1
