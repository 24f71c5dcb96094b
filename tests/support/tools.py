"""Locate the cached test-only binaries, building them with scripts/build-tools.sh.

This module is the one place (besides the script itself) that knows where the
cache lives: ``$SKYMIGRATE_TOOLS_DIR`` or ``~/.cache/skymigrate-tools``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-tools.sh"
TOOLS: tuple[str, ...] = ("kube-apiserver", "kubectl", "etcd", "helm", "versitygw")

_lock = threading.Lock()
_checked: set[str] = set()


class ToolBuildError(RuntimeError):
    """scripts/build-tools.sh failed or did not produce the binary."""


def tools_dir() -> Path:
    """Root of the cache shared by every clone on this machine."""
    env = os.environ.get("SKYMIGRATE_TOOLS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "skymigrate-tools"


def bin_dir() -> Path:
    return tools_dir() / "bin"


def _go_available() -> bool:
    return shutil.which("go") is not None or Path("/usr/local/go/bin/go").is_file()


def tool_path(name: str) -> Path:
    """Return the path of a cached tool binary, building it first if needed.

    The build script is run once per process and tool: it is a no-op (well under
    a second) when the binary's version stamp matches, and rebuilds it when the
    pinned version changed. Without a Go toolchain an existing binary is used as is.
    """
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}")
    path = bin_dir() / name
    with _lock:
        if name not in _checked:
            if not (path.is_file() and not _go_available()):
                _build(name)
            _checked.add(name)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolBuildError(f"{path} missing after running {BUILD_SCRIPT} {name}")
    return path


def _build(name: str) -> None:
    env = dict(os.environ)
    env["SKYMIGRATE_TOOLS_DIR"] = str(tools_dir())
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), name],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolBuildError(f"{BUILD_SCRIPT} {name} exited with {proc.returncode}; see {tools_dir() / 'logs'}")
