"""The Migration spec: one typed model shared by the CRD, the operator, the standalone runner and the agent.

Field names are camelCase on the wire (as in the CRD) and snake_case in Python.  The CRD in ``crds/`` is
generated from this model (``python -m skymigrate.core.crd``), so every description, default and constraint
here is also what ``kubectl explain`` shows and what the API server enforces.  Rules the OpenAPI schema
cannot express are CEL rules (``x-kubernetes-validations``) next to the Python validator that checks the
same thing with the same message; ``tests/test_crd.py`` runs invalid manifests through both.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# Patterns use the syntax Python, pydantic and Go's RE2 (the API server) share: no lookarounds.
# S3 bucket naming rules (the common subset every S3-compatible store accepts); the ".." and "xn--"
# rules are CEL rules on the field since RE2 has no lookahead.
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
BUCKET_RE = re.compile(BUCKET_PATTERN)
ENDPOINT_PATTERN = r"^https?://[^/\s]+(/.*)?$"
STATE_URL_PATTERN = r"^(file://.*|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?)$"
QUANTITY_PATTERN = r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$"
QUANTITY_RE = re.compile(QUANTITY_PATTERN)
RFC3339_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
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

# Messages shared by the Python validators and the CEL rules, so both sides of the API say the same thing.
MSG_BUCKET_DOTS = "bucket must not contain '..'"
MSG_BUCKET_XN = "bucket must not start with 'xn--'"
MSG_ONE_CREDENTIAL = "credentials: set exactly one of secretRef, profile, env, anonymous"
MSG_DISTINCT = "source and target must differ (endpoint, bucket or prefix)"
MSG_SKYPILOT_STATE = "launcher skypilot needs an s3:// stateStore.url: remote nodes cannot reach a local file"
MSG_SIZE_RANGE = "filters: minSize must not exceed maxSize"
MSG_BACKOFF_RANGE = "retry: initialBackoffSeconds must not exceed maxBackoffSeconds"


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules (rule, message) into the generated CRD."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


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
    """A Kubernetes Secret holding an access key pair; the operator reads it and hands the keys to the agents
    as environment variables, never on a command line or in a file."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    namespace: str | None = Field(
        default=None, max_length=63, description="Namespace of the Secret; defaults to the Migration's namespace."
    )
    access_key_id_key: str = Field(
        default="AWS_ACCESS_KEY_ID", min_length=1, description="Key in the Secret's data holding the access key ID."
    )
    secret_access_key_key: str = Field(
        default="AWS_SECRET_ACCESS_KEY",
        min_length=1,
        description="Key in the Secret's data holding the secret access key.",
    )
    session_token_key: str | None = Field(
        default=None, description="Key in the Secret's data holding a session token, for temporary credentials."
    )


class EnvRef(_Model):
    """Names of environment variables holding an access key pair (standalone runs: the variables are read
    from the environment of `skymigrate run`)."""

    access_key_id: str = Field(min_length=1, description="Name of the variable holding the access key ID.")
    secret_access_key: str = Field(min_length=1, description="Name of the variable holding the secret access key.")
    session_token: str | None = Field(default=None, description="Name of the variable holding a session token.")


class CredentialsSpec(_Model):
    """How to obtain credentials for one side: set exactly one of secretRef, profile, env, anonymous."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "[has(self.secretRef), has(self.profile), has(self.env), has(self.anonymous) && self.anonymous]"
                ".exists_one(x, x)",
                MSG_ONE_CREDENTIAL,
            )
        )
    )

    secret_ref: SecretRef | None = Field(
        default=None, description="Read the access key pair from a Kubernetes Secret (operator runs)."
    )
    profile: str | None = Field(
        default=None,
        min_length=1,
        description="Named profile of the AWS shared config and credentials files (~/.aws) where the agents run, "
        "e.g. us-central1.",
    )
    env: EnvRef | None = Field(
        default=None, description="Read the access key pair from environment variables (standalone runs)."
    )
    anonymous: bool = Field(default=False, description="Send unsigned requests (public buckets, test servers).")

    @model_validator(mode="after")
    def _exactly_one(self) -> CredentialsSpec:
        n = sum(x is not None for x in (self.secret_ref, self.profile, self.env)) + int(self.anonymous)
        if n != 1:
            raise ValueError(MSG_ONE_CREDENTIAL)
        return self


class Location(_Model):
    """One side of a migration: an S3-compatible endpoint, a bucket and an optional key prefix."""

    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        description="S3 endpoint URL, http(s)://host[:port], e.g. https://storage.eu-north1.nebius.cloud:443; "
        "omit for AWS S3.",
        json_schema_extra={"pattern": ENDPOINT_PATTERN},
    )
    bucket: str = Field(
        min_length=3,
        max_length=63,
        description="Bucket name: 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit.",
        json_schema_extra={
            "pattern": BUCKET_PATTERN,
            **_cel(("!self.contains('..')", MSG_BUCKET_DOTS), ("!self.startsWith('xn--')", MSG_BUCKET_XN)),
        },
    )
    prefix: str = Field(
        default="",
        max_length=1024,
        description="Key prefix: only keys under it are copied (source) or written (target); "
        "a target key is the target prefix plus the key relative to the source prefix. Empty means the whole bucket.",
    )
    region: str | None = Field(
        default=None, description="Signing region; defaults to us-east-1, which most S3-compatible stores accept."
    )
    credentials: CredentialsSpec = Field(
        default_factory=lambda: CredentialsSpec(anonymous=True),
        description="How to authenticate to this endpoint; unsigned (anonymous) requests when omitted.",
    )
    path_style: bool = Field(
        default=True, description="Address buckets as endpoint/bucket (path style) instead of bucket.endpoint."
    )

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not BUCKET_RE.match(v):
            raise ValueError(f"bucket {v!r} breaks S3 naming rules (3-63 chars of a-z 0-9 . -)")
        if ".." in v:
            raise ValueError(MSG_BUCKET_DOTS)
        if v.startswith("xn--"):
            raise ValueError(MSG_BUCKET_XN)
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(ENDPOINT_PATTERN, v):
            raise ValueError(f"endpoint {v!r} must be an http:// or https:// URL")
        return v.rstrip("/") if v else v

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def same_place(self, other: Location) -> bool:
        return (self.endpoint, self.bucket, self.prefix) == (other.endpoint, other.bucket, other.prefix)


class RetrySpec(_Model):
    """Retries of one object's copy after a transient failure, with exponential backoff."""

    model_config = ConfigDict(
        # has(): defaults are validated as written (before nested defaulting), e.g. retry: {}.
        json_schema_extra=_cel(
            (
                "!has(self.initialBackoffSeconds) || !has(self.maxBackoffSeconds)"
                " || self.initialBackoffSeconds <= self.maxBackoffSeconds",
                MSG_BACKOFF_RANGE,
            )
        )
    )

    attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5, description="Attempts per object (the first try included) before it is reported as failed."
    )
    initial_backoff_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=1.0,
        description="Longest wait before the first retry (randomised below it); doubles with each further attempt.",
    )
    max_backoff_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="Upper bound of the wait between attempts."
    )

    @model_validator(mode="after")
    def _range(self) -> RetrySpec:
        if self.initial_backoff_seconds > self.max_backoff_seconds:
            raise ValueError(MSG_BACKOFF_RANGE)
        return self


class FilterSpec(_Model):
    """Which source objects to copy. Globs match the key relative to the source prefix."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("!has(self.minSize) || !has(self.maxSize) || self.minSize <= self.maxSize", MSG_SIZE_RANGE)
        )
    )

    include: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=1000,
        description="Copy only keys matching one of these globs (fnmatch: *, ?, [abc]; * also matches '/'). "
        "Empty means every key.",
    )
    exclude: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=1000,
        description="Skip keys matching any of these globs; applied after include.",
    )
    min_size: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Copy only objects of at least this many bytes."
    )
    max_size: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Copy only objects of at most this many bytes."
    )
    modified_after: str | None = Field(
        default=None,
        description="Copy only objects last modified after this RFC 3339 time, e.g. 2024-05-01T00:00:00Z "
        "(incremental runs).",
        json_schema_extra={"format": "date-time", "pattern": RFC3339_PATTERN},
    )

    @field_validator("modified_after")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None:
            if not re.match(RFC3339_PATTERN, v):
                raise ValueError(f"modifiedAfter {v!r} must be an RFC 3339 time such as 2024-05-01T00:00:00Z")
            datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        return v

    @model_validator(mode="after")
    def _range(self) -> FilterSpec:
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ValueError(MSG_SIZE_RANGE)
        return self


class ProgressSpec(_Model):
    """How often progress is reported."""

    node_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=15.0, description="Seconds between a node agent's heartbeats (progress, speed, ETA) to the state store."
    )
    cluster_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="Seconds between the operator's cluster-wide progress updates (status, events, log line).",
    )


class RamDiskSpec(_Model):
    """The staging area where batches of small objects land between download and upload."""

    size: str = Field(
        default="16Gi",
        description="Capacity as a Kubernetes quantity (16Gi, 512Mi, 1000000); batches wait while it is 90% full.",
        json_schema_extra={"pattern": QUANTITY_PATTERN},
    )
    path: str | None = Field(
        default=None,
        description="Directory to stage in, ideally a tmpfs mount; defaults to the system temporary directory.",
    )

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_quantity(v)
        return v

    @property
    def size_bytes(self) -> int:
        return parse_quantity(self.size)


class ResourcesSpec(_Model):
    """Machine shape for the SkyPilot launcher (ignored by the local launcher); values as in SkyPilot's resources."""

    infra: str | None = Field(default=None, description="SkyPilot infra, e.g. nebius/eu-north1 or aws/us-east-1.")
    cloud: str | None = Field(default=None, description="Cloud name, e.g. nebius or aws (older form of infra).")
    region: str | None = Field(default=None, description="Cloud region (older form of infra).")
    cpus: str | None = Field(default=None, description="vCPUs per node, e.g. 8 or 8+ (at least 8).")
    memory: str | None = Field(default=None, description="Memory per node in GB, e.g. 32 or 32+.")
    instance_type: str | None = Field(default=None, description="Exact instance type; overrides cpus and memory.")
    disk_size: Annotated[int, Field(gt=0)] | None = Field(default=None, description="Boot disk size in GB.")
    use_spot: bool = Field(default=False, description="Use spot/preemptible instances.")
    image: str | None = Field(default=None, description="Machine or container image id.")


class LauncherSpec(_Model):
    """How the node agents are started."""

    type: Literal["local", "skypilot"] = Field(
        default="local",
        description="local: agent processes on the operator's host. skypilot: one SkyPilot cluster of `nodes` "
        "machines (needs an s3:// stateStore).",
    )
    recovery: bool = Field(
        default=False, description="SkyPilot only: run as managed jobs that are relaunched after a preemption."
    )
    autostop_minutes: Annotated[int, Field(ge=1)] = Field(
        default=30, description="SkyPilot only: stop the cluster after this many idle minutes if teardown is missed."
    )


class StateStoreSpec(_Model):
    """Where the plan, shard manifests, heartbeats, journals and the report live.

    ``file:///path`` for single-host runs; ``s3://bucket/prefix`` (with its own endpoint and
    credentials) when agents run elsewhere, since object storage is the one thing both sides reach.
    """

    url: str = Field(
        default="file://.state",
        max_length=2048,
        description="file:///path for single-host runs or s3://bucket/prefix, which both the operator and "
        "remote agents reach.",
        json_schema_extra={"pattern": STATE_URL_PATTERN},
    )
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        description="S3 endpoint URL of an s3:// state store; omit for AWS S3.",
        json_schema_extra={"pattern": ENDPOINT_PATTERN},
    )
    region: str | None = Field(default=None, description="Signing region of an s3:// state store.")
    credentials: CredentialsSpec = Field(
        default_factory=lambda: CredentialsSpec(anonymous=True),
        description="How to authenticate to an s3:// state store; anonymous when omitted.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(STATE_URL_PATTERN, v):
            raise ValueError(f"stateStore.url {v!r} must be file:///path or s3://bucket/prefix")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(ENDPOINT_PATTERN, v):
            raise ValueError(f"stateStore.endpoint {v!r} must be an http:// or https:// URL")
        return v


class TransferSpec(_Model):
    """Tuning knobs; the defaults come from the benchmarks in bench/."""

    small_object_threshold: Annotated[int, Field(ge=0, le=50 * 2**20)] = Field(
        default=8 * 2**20,
        description="Objects up to this many bytes (at most 50 MiB, s5cmd's single-upload limit) take the "
        "small-object path (smallObjectMethod); larger ones are streamed source to target through s5cmd.",
    )
    batch_max_objects: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=512, description="Most objects in one batch."
    )
    batch_max_bytes: Annotated[int, Field(ge=1)] = Field(
        default=256 * 2**20, description="Most bytes in one batch (also bounded by the RAM disk size)."
    )
    small_object_method: Literal["direct", "s5cmd"] = Field(
        default="direct",
        description="How objects up to smallObjectThreshold move: direct (one GET and one PUT with Content-MD5 "
        "each, in the agent; fewest requests) or s5cmd (batches through `s5cmd run` over the RAM-disk staging area).",
    )
    verify_checksum: bool = Field(
        default=True,
        description="Besides sizes, compare checksums/ETags where both sides compute them the same way.",
    )
    worker_processes: Annotated[int, Field(ge=0, le=64)] = Field(
        default=0,
        description="Processes per node that copy small objects directly, each its own Python interpreter so "
        "that more than one CPU core works on them: 0 = one per CPU core available to the agent, 1 = the agent "
        "process alone. The automatic count is used only when a shard has 1,000+ small objects to repay start-up.",
    )


# What a migration is (where from, where to, how split, where its state lives) cannot change once it exists:
# the plan, the shards and the journals all depend on it.
IMMUTABLE_FIELDS = (
    "source",
    "target",
    "nodes",
    "filters",
    "stateStore",
    "launcher",
    "transfer",
    "resources",
    "ramDisk",
)


def msg_immutable(field: str) -> str:
    return (
        f"spec.{field} cannot change once a Migration exists; only concurrency, debug, progress, retry and "
        "deleteStateOnDelete can: create a new Migration instead"
    )


class MigrationSpec(_Model):
    """Copy every object under source to target, sharded over nodes, verified, with progress and ETA in status."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.source.bucket != self.target.bucket"
                " || (has(self.source.prefix) ? self.source.prefix : '')"
                " != (has(self.target.prefix) ? self.target.prefix : '')"
                " || (has(self.source.endpoint) ? self.source.endpoint : '')"
                " != (has(self.target.endpoint) ? self.target.endpoint : '')",
                MSG_DISTINCT,
            ),
            (
                "!has(self.launcher) || !has(self.launcher.type) || self.launcher.type != 'skypilot'"
                " || (has(self.stateStore) && has(self.stateStore.url) && self.stateStore.url.startsWith('s3://'))",
                MSG_SKYPILOT_STATE,
            ),
            *(
                (f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})", msg_immutable(f))
                for f in IMMUTABLE_FIELDS
            ),
        )
    )

    source: Location = Field(description="Where the objects are copied from.")
    target: Location = Field(description="Where the objects are copied to.")
    nodes: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=1, description="Node agents sharing the work; the source is split into this many balanced shards."
    )
    concurrency: Annotated[int, Field(ge=1, le=256)] = Field(
        default=4, description="Parallel transfers per node; may change while running."
    )
    debug: bool = Field(default=False, description="Detailed per-object diagnostics in the agent logs.")
    retry: RetrySpec = Field(default_factory=RetrySpec, description="Per-object retries.")
    filters: FilterSpec = Field(default_factory=FilterSpec, description="Which source objects to copy.")
    progress: ProgressSpec = Field(default_factory=ProgressSpec, description="Progress reporting intervals.")
    ram_disk: RamDiskSpec = Field(default_factory=RamDiskSpec, description="Staging area for small-object batches.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Machine shape for SkyPilot nodes.")
    launcher: LauncherSpec = Field(default_factory=LauncherSpec, description="How node agents are started.")
    state_store: StateStoreSpec = Field(
        default_factory=StateStoreSpec, description="Where the plan, heartbeats, journals and report are kept."
    )
    transfer: TransferSpec = Field(default_factory=TransferSpec, description="Transfer tuning knobs.")
    delete_state_on_delete: bool = Field(
        default=False,
        description="Delete the state-store data (plan, journals, report) with the Migration; kept by default.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> MigrationSpec:
        if self.source.same_place(self.target):
            raise ValueError(MSG_DISTINCT)
        if self.launcher.type == "skypilot" and not self.state_store.url.startswith("s3://"):
            raise ValueError(MSG_SKYPILOT_STATE)
        return self


# Fields (wire names) a user may change on a running migration; everything else is fixed once created,
# enforced by the API server through CEL transition rules (see IMMUTABLE_RULES).
MUTABLE_FIELDS: frozenset[str] = frozenset({"concurrency", "debug", "progress", "retry", "deleteStateOnDelete"})


def load_manifest(doc: dict[str, Any]) -> tuple[dict[str, Any], MigrationSpec]:
    """Validate a Migration manifest; returns (metadata, spec). Raises ValueError with a readable message."""
    if doc.get("kind") != "Migration":
        raise ValueError(f"expected kind Migration, got {doc.get('kind')!r}")
    meta = doc.get("metadata") or {}
    if not meta.get("name"):
        raise ValueError("metadata.name is required")
    return meta, MigrationSpec.model_validate(doc.get("spec") or {})
