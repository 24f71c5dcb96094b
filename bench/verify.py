"""Byte-for-byte check of a target bucket: every expected key, nothing else, each with the expected
size and sha256, read back through the S3 API (a batch `s5cmd cp` to the RAM disk, then hashed)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from skymigrate.agent.s5cmd import binary as s5cmd_binary

from bench.servers import Side

READ = 4 << 20


def _sha256(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(READ):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def check(side: Side, bucket: str, expected: dict[str, tuple[int, str]], scratch: Path) -> list[str]:
    """Problems found (empty means the target is exactly right)."""
    dest = scratch / "verify"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        r = subprocess.run(
            [s5cmd_binary(), "--endpoint-url", side.server.endpoint_url, "--numworkers", "64",
             "cp", f"s3://{bucket}/*", f"{dest}/"],
            env=side.s5cmd_env(), capture_output=True, text=True, check=False,
        )  # fmt: skip
        if r.returncode != 0 and not any(dest.iterdir()):
            return [f"could not read the target back: {r.stderr.strip()[:300] or 'empty bucket'}"]
        files = {str(p.relative_to(dest)): p for p in dest.rglob("*") if p.is_file()}
        problems = [f"missing {k}" for k in sorted(expected.keys() - files.keys())]
        problems += [f"unexpected {k}" for k in sorted(files.keys() - expected.keys())]
        common = sorted(expected.keys() & files.keys())
        with ThreadPoolExecutor(2) as pool:
            got = dict(zip(common, pool.map(lambda k: _sha256(files[k]), common), strict=True))
        problems += [
            f"{k}: {got[k][0]} bytes sha256 {got[k][1][:12]}, expected {expected[k][0]} bytes {expected[k][1][:12]}"
            for k in common
            if got[k] != expected[k]
        ]
        return problems
    finally:
        shutil.rmtree(dest, ignore_errors=True)
