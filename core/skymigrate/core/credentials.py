"""Resolved credentials for one side, and the only way they travel between processes: env vars.

Secrets never go on a command line, in a file the project writes, or in a log line: ``repr`` redacts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from skymigrate.core.spec import CredentialsSpec

Side = Literal["source", "target", "state"]


class CredentialsError(ValueError):
    """Credentials could not be resolved; the message names what to set, never a value."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    anonymous: bool = False

    def __repr__(self) -> str:
        how = "anonymous" if self.anonymous else f"profile={self.profile}" if self.profile else "keys=***"
        return f"Credentials({how})"

    def secret_values(self) -> list[str]:
        """Values that must never be printed (for redaction checks and log filters)."""
        return [v for v in (self.access_key_id, self.secret_access_key, self.session_token) if v]

    def to_env(self, side: Side) -> dict[str, str]:
        """Environment for an agent process (the only channel credentials travel on)."""
        p = f"SKYMIGRATE_{side.upper()}_"
        env: dict[str, str] = {}
        if self.anonymous:
            env[p + "ANONYMOUS"] = "1"
        if self.profile:
            env[p + "PROFILE"] = self.profile
        if self.access_key_id and self.secret_access_key:
            env[p + "ACCESS_KEY_ID"] = self.access_key_id
            env[p + "SECRET_ACCESS_KEY"] = self.secret_access_key
        if self.session_token:
            env[p + "SESSION_TOKEN"] = self.session_token
        return env

    @classmethod
    def from_env(cls, side: Side, environ: Mapping[str, str] | None = None) -> Credentials:
        e = os.environ if environ is None else environ
        p = f"SKYMIGRATE_{side.upper()}_"
        creds = cls(
            access_key_id=e.get(p + "ACCESS_KEY_ID"),
            secret_access_key=e.get(p + "SECRET_ACCESS_KEY"),
            session_token=e.get(p + "SESSION_TOKEN"),
            profile=e.get(p + "PROFILE"),
            anonymous=e.get(p + "ANONYMOUS") == "1",
        )
        if not (creds.anonymous or creds.profile or (creds.access_key_id and creds.secret_access_key)):
            raise CredentialsError(f"no {side} credentials: set {p}ACCESS_KEY_ID/{p}SECRET_ACCESS_KEY or {p}PROFILE")
        return creds


def resolve_local(spec: CredentialsSpec, side: Side, environ: Mapping[str, str] | None = None) -> Credentials:
    """Resolve credentials without Kubernetes (standalone runs). Secret refs need the operator."""
    e = os.environ if environ is None else environ
    if spec.anonymous:
        return Credentials(anonymous=True)
    if spec.profile:
        return Credentials(profile=spec.profile)
    if spec.env:
        akid, secret = e.get(spec.env.access_key_id), e.get(spec.env.secret_access_key)
        if not akid or not secret:
            raise CredentialsError(
                f"{side} credentials: environment variables {spec.env.access_key_id} and "
                f"{spec.env.secret_access_key} must both be set"
            )
        token = e.get(spec.env.session_token) if spec.env.session_token else None
        return Credentials(access_key_id=akid, secret_access_key=secret, session_token=token)
    assert spec.secret_ref is not None
    raise CredentialsError(
        f"{side} credentials come from Secret {spec.secret_ref.name!r}, which only the operator can read; "
        "for a standalone run use credentials.env or credentials.profile"
    )
