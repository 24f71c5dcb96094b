"""What one copy attempt gets and gives back, whichever method moves the bytes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from skymigrate.agent.s5cmd import Endpoint
from skymigrate.core import etag as etags
from skymigrate.core.etag import PartHasher, parts_in
from skymigrate.core.manifest import ObjectEntry
from skymigrate.core.spec import TransferSpec

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from skymigrate.core.s3http import S3HttpClient

Stage = Literal["download", "upload", "verify"]
Method = Literal["direct", "batch", "stream", "inprocess"]

# Headers that travel with an object besides its bytes (user metadata is carried separately):
# boto3's parameter name -> the HTTP header.
HTTP_HEADERS = {
    "ContentType": "Content-Type",
    "ContentEncoding": "Content-Encoding",
    "ContentDisposition": "Content-Disposition",
    "CacheControl": "Cache-Control",
    "ContentLanguage": "Content-Language",
}
HEADER_FIELDS = tuple(HTTP_HEADERS)
META_PREFIX = "x-amz-meta-"


@dataclass(frozen=True)
class ObjectMeta:
    size: int
    etag: str
    headers: dict[str, str]
    metadata: dict[str, str]
    part_size: int | None = None  # of a multipart source, as the server reports part 1

    @classmethod
    def from_head(cls, head: dict[str, object]) -> ObjectMeta:
        return cls(
            size=int(str(head["ContentLength"])),
            etag=str(head.get("ETag", "")).strip('"'),
            headers={k: str(head[k]) for k in HEADER_FIELDS if head.get(k)},
            metadata=dict(head.get("Metadata") or {}),  # type: ignore[call-overload]
        )

    @classmethod
    def from_http(cls, headers: Mapping[str, str]) -> ObjectMeta:
        """From raw response headers (names lower-cased), as the lean client returns them."""
        return cls(
            size=int(headers["content-length"]),
            etag=headers.get("etag", "").strip('"'),
            headers={f: v for f, h in HTTP_HEADERS.items() if (v := headers.get(h.lower()))},
            metadata={k[len(META_PREFIX) :]: v for k, v in headers.items() if k.startswith(META_PREFIX)},
        )

    def http_headers(self) -> dict[str, str]:
        """Headers that recreate this object's headers and user metadata on a PUT."""
        out = {HTTP_HEADERS[f]: v for f, v in self.headers.items()}
        out.update({META_PREFIX + k: v for k, v in self.metadata.items()})
        return out


@dataclass
class Outcome:
    entry: ObjectEntry
    ok: bool
    method: Method
    stage: Stage | None = None
    error: str | None = None
    permanent: bool = False  # retrying cannot help (the source object is gone)
    bytes: int = 0
    seconds: float = 0.0
    download_s: float = 0.0
    upload_s: float = 0.0


@dataclass
class Context:
    """Everything a copy method needs; shared by all workers (clients are thread-safe)."""

    source: Endpoint
    target: Endpoint
    source_client: S3Client
    target_client: S3Client
    source_http: S3HttpClient  # lean GET/PUT for small objects (same endpoint and credentials)
    target_http: S3HttpClient
    transfer: TransferSpec
    part_concurrency: int = 4
    batch_workers: int = 32
    on_bytes: Callable[[str, int], None] = field(default=lambda key, n: None)  # in-flight progress
    debug: Callable[[str], None] = field(default=lambda msg: None)

    def target_key(self, key: str) -> str:
        return self.target.location.prefix + key

    def source_key(self, key: str) -> str:
        return self.source.location.prefix + key


def upload_part_size(meta: ObjectMeta, *, whole_mib: bool) -> tuple[int, bool]:
    """Part size for the upload: the source's own when the server told us (so ETags compare like with
    like), else one that keeps the object within S3's 10,000-part limit. Returns (size, known)."""
    return etags.upload_part_size(meta.size, meta.etag, meta.part_size, whole_mib=whole_mib)


def hasher_for(meta: ObjectMeta, part_size: int, known: bool, single_put: bool, verify: bool) -> PartHasher:
    """Only the hashes that can be compared with something: each costs a pass of CPU."""
    if not verify:
        return PartHasher(part_size, md5=False, parts=False)
    src_multipart = parts_in(meta.etag) is not None
    want_md5 = single_put or not src_multipart or meta.size <= part_size
    want_parts = not single_put or (src_multipart and known)
    return PartHasher(part_size, md5=want_md5, parts=want_parts, part_size_known=known)


def head(client: S3Client, bucket: str, key: str) -> ObjectMeta | None:
    """HEAD an object; None when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        meta = ObjectMeta.from_head(dict(client.head_object(Bucket=bucket, Key=key)))
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    if (parts_in(meta.etag) or 0) > 1:
        meta = replace(meta, part_size=first_part_size(client, bucket, key, meta.size))
    return meta


def first_part_size(client: S3Client, bucket: str, key: str, size: int) -> int | None:
    """Part 1's length: the uploader's part size. None when the server ignores partNumber."""
    from botocore.exceptions import ClientError

    try:
        n = int(client.head_object(Bucket=bucket, Key=key, PartNumber=1)["ContentLength"])
    except ClientError:
        return None
    return n if 0 < n < size else None


def now() -> float:
    return time.monotonic()
