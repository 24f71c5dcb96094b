"""Talking to the SkyPilot runner (sky_runner.py) in its isolated environment, over a JSON pipe.

Every line SkyPilot prints is redacted of known secret values before it reaches a file or a log.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import re
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("skymigrate.operator")

RUNNER = Path(__file__).with_name("sky_runner.py")
SKY_VERSION = "0.14.1"
CALL_TIMEOUT_S = 600.0
LONG_CALL_TIMEOUT_S = 3 * 3600.0  # waiting for a launch or a teardown: minutes, never hours
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CRED_PREFIXES = ("SKYMIGRATE_SOURCE_", "SKYMIGRATE_TARGET_", "SKYMIGRATE_STATE_")


class SkyError(RuntimeError):
    """A SkyPilot call failed. ``kind``: missing, cancelled, api, provisioning, invalid, not_up,
    unavailable (no SkyPilot environment), error."""

    def __init__(self, kind: str, type_: str, message: str) -> None:
        super().__init__(f"{type_}: {message}")
        self.kind, self.type, self.message = kind, type_, message


def default_python() -> str | None:
    """$SKYMIGRATE_SKY_PYTHON, else the environment scripts/setup-skypilot-env.sh creates by default."""
    if env := os.environ.get("SKYMIGRATE_SKY_PYTHON"):
        return env
    venv = os.environ.get("SKYMIGRATE_SKY_VENV") or str(
        Path(os.environ.get("SKYMIGRATE_TOOLS_DIR", Path.home() / ".cache" / "skymigrate-tools")) / "sky-venv"
    )
    py = Path(venv) / "bin" / "python"
    return str(py) if py.is_file() else None


class Redactor:
    """Masks every registered secret value (the union over all migrations this process launches)."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= 4)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
            text = text.replace(s, "***")
        return text


class _Runner:
    """One runner process: requests go in one at a time; its stderr goes to the current call's log."""

    def __init__(self, proc: subprocess.Popen[str], default_sink: Callable[[str], None]) -> None:
        self.proc = proc
        self.sink = default_sink
        self.lock = threading.Lock()
        self.call: object | None = None  # the call this runner serves now (a canceller may only kill that one)
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="sky-runner-out").start()
        threading.Thread(target=self._errors, daemon=True, name="sky-runner-err").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                with contextlib.suppress(ValueError):
                    self.answers.put(json.loads(line))
        finally:
            self.answers.put(None)  # whatever happened, nobody waits forever

    def _errors(self) -> None:
        # Drained to the end whatever a line holds: a full stderr pipe would stall the runner.
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with contextlib.suppress(Exception):
                self.sink(line.rstrip("\n"))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, msg: dict[str, Any], timeout: float | None) -> dict[str, Any] | None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        while True:
            try:
                raw = self.answers.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise SkyError("api", "Timeout", f"SkyPilot did not answer {msg['op']} within {timeout:.0f}s") from None
            if raw is None or raw.get("id") == msg["id"]:
                return raw

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()


class SkyClient:
    """A small pool of runner processes. Thread-safe: concurrent calls use separate processes.

    Importing ``sky`` takes seconds, so processes are kept (up to ``max_idle``) and reused; a call
    that blocks for minutes (waiting for a launch, tearing down) holds its own process, which
    ``on_start`` hands to the caller so a teardown can kill a launch that is still waiting.
    """

    def __init__(
        self,
        python: str | None = None,
        runner: Path | str | None = None,
        log_file: Path | None = None,
        redact: Redactor | None = None,
        max_idle: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        self.python = python or default_python()
        self.runner = str(runner or RUNNER)
        self.log_file = log_file
        self.redact = redact or Redactor()
        self.max_idle = max_idle
        self.extra_env = env or {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._idle: list[_Runner] = []

    def _env(self) -> dict[str, str]:
        # The runner gets credentials only on stdin, never in its environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CRED_PREFIXES)}
        env.setdefault("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def _spawn(self) -> _Runner:
        if not self.python or not Path(self.python).is_file():
            raise SkyError(
                "unavailable",
                "SkyPilotNotInstalled",
                f"no SkyPilot environment (looked for {self.python or 'SKYMIGRATE_SKY_PYTHON'}): run "
                "scripts/setup-skypilot-env.sh or set SKYMIGRATE_SKY_PYTHON to a Python with skypilot installed",
            )
        proc = subprocess.Popen(
            [self.python, self.runner],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            env=self._env(),
            start_new_session=True,
        )
        return _Runner(proc, self._sink(self.log_file))

    def _sink(self, path: Path | None) -> Callable[[str], None]:
        def write(line: str) -> None:
            line = self.redact(_ANSI.sub("", line))
            log.debug("skypilot: %s", line)
            if path is not None:
                with self._lock, contextlib.suppress(OSError):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with path.open("a", encoding="utf-8") as f:
                        f.write(line + "\n")

        return write

    def _checkout(self) -> _Runner:
        with self._lock:
            while self._idle:
                r = self._idle.pop()
                if r.alive:
                    return r
        return self._spawn()

    def _checkin(self, r: _Runner) -> None:
        r.sink = self._sink(self.log_file)
        with self._lock:
            if r.alive and len(self._idle) < self.max_idle:
                self._idle.append(r)
                return
        if r.alive:
            r.kill()

    def call(
        self,
        op: str,
        *,
        timeout: float | None = CALL_TIMEOUT_S,
        log_file: Path | None = None,
        on_start: Callable[[Callable[[], None]], None] = lambda cancel: None,
        **args: Any,
    ) -> dict[str, Any]:
        """Run one operation (``timeout``: seconds to wait for its answer; None waits as long as it takes).

        ``on_start`` receives a function that aborts this very call (it kills the runner process only
        while that process still serves this call, never once it went back to the pool)."""
        r = self._checkout()
        token = object()
        with r.lock:
            r.call = token

        def cancel() -> None:
            with r.lock:
                if r.call is token:
                    r.kill()

        on_start(cancel)
        if log_file is not None:
            r.sink = self._sink(log_file)
        try:
            raw = r.request({"id": next(self._ids), "op": op, **args}, timeout)
        finally:
            with r.lock:
                r.call = None
            self._checkin(r)
        if raw is None:
            if r.proc.returncode is not None and r.proc.returncode < 0:
                raise SkyError("cancelled", "Killed", f"the SkyPilot {op} call was stopped")
            raise SkyError("error", "RunnerExited", "the SkyPilot runner exited without answering")
        if raw.get("ok"):
            result: dict[str, Any] = raw.get("result") or {}
            return result
        err = raw.get("error") or {}
        raise SkyError(err.get("kind", "error"), err.get("type", "Error"), self.redact(err.get("message", "")))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for r in idle:
            r.kill()
