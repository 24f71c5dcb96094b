"""The Migration spec: one typed model shared by the CRD, the operator, the standalone runner and the agent.

Field names are camelCase on the wire (as in the CRD) and snake_case in Python.  The CRD's OpenAPI
schema in ``crds/`` mirrors this model; ``tests/test_crd_schema.py`` keeps the two in step.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# S3 bucket naming rules (the common subset every S3-compatible store accepts).
BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_QUANTITY_FACTOR = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_quantity(value: str) -> int:
    """Kubernetes-style quantity ("16Gi", "500M", "1024") to bytes."""
    m = QUANTITY_RE.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a quantity such as 16Gi, 512Mi or 1000000")
    return int(float(m.group(1)) * _QUANTITY_FACTOR[m.group(2)])


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The camelCase dict as it appears in a manifest (defaults included)."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class SecretRef(_Model):
    """A Kubernetes Secret holding an access key pair."""

    name: str
    namespace: str | None = None
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    session_token_key: str | None = None


class EnvRef(_Model):
    """Names of environment variables holding an access key pair (standalone runs)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class CredentialsSpec(_Model):
    """Exactly one way to obtain credentials for one side."""

    secret_ref: SecretRef | None = None
    profile: str | None = None
    env: EnvRef | None = None
    anonymous: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> CredentialsSpec:
        n = sum(x is not None for x in (self.secret_ref, self.profile, self.env)) + int(self.anonymous)
        if n != 1:
            raise ValueError("credentials: set exactly one of secretRef, profile, env, anonymous")
        return self


class Location(_Model):
    """One side of a migration: an S3-compatible endpoint, a bucket and an optional key prefix."""

    endpoint: str | None = Field(default=None, description="https://host:port; empty means AWS S3")
    bucket: str
    prefix: str = ""
    region: str | None = None
    credentials: CredentialsSpec = Field(default_factory=lambda: CredentialsSpec(anonymous=True))
    path_style: bool = True

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not BUCKET_RE.match(v):
            raise ValueError(f"bucket {v!r} breaks S3 naming rules (3-63 chars of a-z 0-9 . -)")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+(/.*)?$", v):
            raise ValueError(f"endpoint {v!r} must be an http:// or https:// URL")
        return v.rstrip("/") if v else v

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def same_place(self, other: Location) -> bool:
        return (self.endpoint, self.bucket, self.prefix) == (other.endpoint, other.bucket, other.prefix)


class RetrySpec(_Model):
    attempts: Annotated[int, Field(ge=1, le=100)] = 5
    initial_backoff_seconds: Annotated[float, Field(gt=0, le=600)] = 1.0
    max_backoff_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0


class FilterSpec(_Model):
    """Which source objects to copy. Globs match the key relative to the source prefix."""

    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    min_size: Annotated[int, Field(ge=0)] | None = None
    max_size: Annotated[int, Field(ge=0)] | None = None
    modified_after: str | None = None


class ProgressSpec(_Model):
    node_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0
    cluster_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0


class RamDiskSpec(_Model):
    size: str = "16Gi"
    path: str | None = None

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_quantity(v)
        return v

    @property
    def size_bytes(self) -> int:
        return parse_quantity(self.size)


class ResourcesSpec(_Model):
    """Machine shape for the SkyPilot launcher (ignored by the local launcher)."""

    infra: str | None = None
    cloud: str | None = None
    region: str | None = None
    cpus: str | None = None
    memory: str | None = None
    instance_type: str | None = None
    disk_size: Annotated[int, Field(gt=0)] | None = None
    use_spot: bool = False
    image: str | None = None


class LauncherSpec(_Model):
    type: Literal["local", "skypilot"] = "local"
    recovery: bool = False
    autostop_minutes: Annotated[int, Field(ge=1)] = 30


class StateStoreSpec(_Model):
    """Where the plan, shard manifests, heartbeats, journals and the report live.

    ``file:///path`` for single-host runs; ``s3://bucket/prefix`` (with its own endpoint and
    credentials) when agents run elsewhere, since object storage is the one thing both sides reach.
    """

    url: str = "file://.state"
    endpoint: str | None = None
    region: str | None = None
    credentials: CredentialsSpec = Field(default_factory=lambda: CredentialsSpec(anonymous=True))

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("file://") or re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", v)):
            raise ValueError(f"stateStore.url {v!r} must be file:///path or s3://bucket/prefix")
        return v


class TransferSpec(_Model):
    """Tuning knobs; the defaults come from the benchmarks in bench/."""

    small_object_threshold: Annotated[int, Field(ge=0)] = 8 * 2**20
    batch_max_objects: Annotated[int, Field(ge=1, le=100_000)] = 512
    batch_max_bytes: Annotated[int, Field(ge=1)] = 256 * 2**20
    verify_checksum: bool = True


class MigrationSpec(_Model):
    source: Location
    target: Location
    nodes: Annotated[int, Field(ge=1, le=1000)] = 1
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    debug: bool = False
    retry: RetrySpec = Field(default_factory=RetrySpec)
    filters: FilterSpec = Field(default_factory=FilterSpec)
    progress: ProgressSpec = Field(default_factory=ProgressSpec)
    ram_disk: RamDiskSpec = Field(default_factory=RamDiskSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    launcher: LauncherSpec = Field(default_factory=LauncherSpec)
    state_store: StateStoreSpec = Field(default_factory=StateStoreSpec)
    transfer: TransferSpec = Field(default_factory=TransferSpec)
    delete_state_on_delete: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> MigrationSpec:
        if self.source.same_place(self.target):
            raise ValueError("source and target must differ (endpoint, bucket or prefix)")
        return self


# Fields a user may change on a running migration; everything else is fixed once planned.
MUTABLE_FIELDS: frozenset[str] = frozenset({"concurrency", "debug", "progress", "retry"})


def load_manifest(doc: dict[str, Any]) -> tuple[dict[str, Any], MigrationSpec]:
    """Validate a Migration manifest; returns (metadata, spec). Raises ValueError with a readable message."""
    if doc.get("kind") != "Migration":
        raise ValueError(f"expected kind Migration, got {doc.get('kind')!r}")
    meta = doc.get("metadata") or {}
    if not meta.get("name"):
        raise ValueError("metadata.name is required")
    return meta, MigrationSpec.model_validate(doc.get("spec") or {})
