"""Where a migration keeps its plan, shard manifests, heartbeats, journals and report.

Object storage is the one thing both the operator and agents on any cloud can reach, so the store is an
S3 prefix; ``file://`` serves single-host runs. Every write replaces a whole object (S3 has no append),
which is why journals are written as numbered segments.

Layout under the migration's root: config.json, plan.json, shards/<rank>.jsonl.gz,
progress/<rank>.json, journal/<rank>/<seq>.jsonl.gz, failed/<rank>.jsonl, report.json.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from skymigrate.core.credentials import Credentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class StateStoreError(RuntimeError):
    pass


class StateStore(Protocol):
    url: str

    def put(self, rel: str, data: bytes) -> None: ...
    def get(self, rel: str) -> bytes | None: ...
    def list(self, rel_prefix: str) -> list[str]: ...
    def delete_all(self) -> None: ...
    def child(self, rel: str) -> StateStore: ...


class LocalStateStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise StateStoreError(f"state path {rel!r} escapes the store")
        return p

    def put(self, rel: str, data: bytes) -> None:
        p = self._path(rel)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            # Write-then-rename: a reader never sees half a heartbeat or manifest.
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            Path(tmp).replace(p)
        except OSError as e:
            raise StateStoreError(f"cannot write state store {self.url}: {e.strerror} ({p})") from e

    def get(self, rel: str) -> bytes | None:
        try:
            return self._path(rel).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, rel_prefix: str) -> list[str]:
        base = self._path(rel_prefix)
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
        )

    def delete_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def child(self, rel: str) -> LocalStateStore:
        return LocalStateStore(self._path(rel))


class S3StateStore:
    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}"

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def put(self, rel: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data)
        except Exception as e:
            raise StateStoreError(f"cannot write state store {self.url}: {_short(e)}") from e

    def get(self, rel: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(rel))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def list(self, rel_prefix: str) -> list[str]:
        out: list[str] = []
        strip = len(self._key(""))
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(rel_prefix)
        ):
            out.extend(o["Key"][strip:] for o in page.get("Contents", []))
        return sorted(out)

    def delete_all(self) -> None:
        keys = self.list("")
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._key(k)} for k in keys[i : i + 1000]], "Quiet": True},
            )

    def child(self, rel: str) -> S3StateStore:
        return S3StateStore(self.client, self.bucket, self._key(rel))


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:300]


def open_store(url: str, endpoint: str | None, creds: Credentials | None, region: str | None = None) -> StateStore:
    """A store for ``file:///path`` or ``s3://bucket/prefix``."""
    if url.startswith("file://"):
        return LocalStateStore(Path(url.removeprefix("file://")).absolute())
    if url.startswith("s3://"):
        from skymigrate.core.s3 import make_client

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return S3StateStore(make_client(endpoint, creds or Credentials(anonymous=True), region), bucket, prefix)
    raise StateStoreError(f"unsupported state store URL {url!r}: use file:///path or s3://bucket/prefix")


def probe_writable(store: StateStore) -> None:
    """Fail early, with the store's URL, if the store cannot be written."""
    store.put(".probe", b"ok")
    with contextlib.suppress(Exception):
        if store.get(".probe") != b"ok":
            raise StateStoreError(f"state store {store.url} did not return what was written")
