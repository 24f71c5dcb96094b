"""Objects s5cmd cannot copy exactly (a key with a trailing '/' or a line break, a header s5cmd cannot
set) are copied in-process with boto3.

Bytes pass through a staging file one part at a time, so the upload knows each part's length and the
staging area holds at most one part per object. A single-part object is read and verified completely
before its one PUT; a multipart upload is completed only after every byte was read and checked against
the source, and aborted on any failure, so the target never shows a partial object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skymigrate.agent import verify
from skymigrate.agent.work import Context, ObjectMeta, Outcome, hasher_for, head, now, upload_part_size
from skymigrate.core.etag import S3_MAX_PARTS, PartHasher
from skymigrate.core.manifest import ObjectEntry

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHUNK = 1 << 20


class _DownloadError(Exception):
    pass


class _Staged:
    """Moves the source body into the staging file, a part at a time, hashing as it goes."""

    def __init__(self, body: Any, path: Path, h: PartHasher, on_bytes: Callable[[int], None]) -> None:
        self.body, self.path, self.h, self.on_bytes = body, path, h, on_bytes

    def fill(self, limit: int) -> int:
        """Replace the staging file with up to ``limit`` next bytes of the source; returns the count."""
        n = 0
        try:
            with self.path.open("wb") as f:
                while n < limit and (chunk := self.body.read(min(CHUNK, limit - n))):
                    self.h.update(chunk)
                    f.write(chunk)
                    n += len(chunk)
                    self.on_bytes(len(chunk) // 2)
        except OSError as e:  # the staging area itself: not the source's fault, but retryable all the same
            raise _DownloadError(f"staging: {e}") from e
        except Exception as e:
            raise _DownloadError(_short(e)) from e
        return n


def staged_bytes(meta: ObjectMeta) -> int:
    """Staging space one copy needs: the object, or one part of it."""
    return min(meta.size, upload_part_size(meta, whole_mib=False)[0])


def copy_inprocess(ctx: Context, entry: ObjectEntry, meta: ObjectMeta, staging: Path) -> Outcome:
    t0 = now()
    src_b, dst_b = ctx.source.location.bucket, ctx.target.location.bucket
    skey, tkey = ctx.source_key(entry.key), ctx.target_key(entry.key)
    part_size, known = upload_part_size(meta, whole_mib=False)
    single = meta.size <= part_size
    h = hasher_for(meta, part_size, known, single_put=single, verify=ctx.transfer.verify_checksum)
    staging.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {**meta.headers, "Metadata": meta.metadata}
    try:
        try:
            body = ctx.source_client.get_object(Bucket=src_b, Key=skey)["Body"]
        except ctx.source_client.exceptions.NoSuchKey:
            return Outcome(entry, False, "inprocess", "download", "source object no longer exists", permanent=True)
        except Exception as e:
            return Outcome(entry, False, "inprocess", "download", _short(e), seconds=now() - t0)

        staged = _Staged(body, staging, h, lambda n: ctx.on_bytes(entry.key, n))
        try:
            if single:
                staged.fill(meta.size + 1)  # one byte more than expected reveals a source that grew
                if problem := verify.check_source(h, meta.size, meta.etag):
                    return Outcome(entry, False, "inprocess", "download", problem, seconds=now() - t0)
                t_dl = now()
                with staging.open("rb") as f:
                    ctx.target_client.put_object(Bucket=dst_b, Key=tkey, Body=f, **extra)
            else:
                problem = _multipart(ctx.target_client, dst_b, tkey, part_size, extra, staged, meta.size, meta.etag)
                if problem:
                    return Outcome(entry, False, "inprocess", "download", problem, seconds=now() - t0)
                t_dl = now()
        except _DownloadError as e:
            return Outcome(entry, False, "inprocess", "download", str(e), seconds=now() - t0)
        except Exception as e:
            return Outcome(entry, False, "inprocess", "upload", _short(e), seconds=now() - t0)
        got = head(ctx.target_client, dst_b, tkey)
        bad = "target object missing after upload" if got is None else verify.check_target(h, got.size, got.etag)
        if bad:
            with contextlib.suppress(Exception):
                ctx.target_client.delete_object(Bucket=dst_b, Key=tkey)
            return Outcome(entry, False, "inprocess", "verify", bad, seconds=now() - t0)
        return Outcome(
            entry, True, "inprocess", bytes=h.total, seconds=now() - t0, download_s=t_dl - t0, upload_s=now() - t_dl
        )
    finally:
        staging.unlink(missing_ok=True)


def _multipart(
    c: S3Client, bucket: str, key: str, part_size: int, extra: dict[str, Any], staged: _Staged, size: int, etag: str
) -> str | None:
    """Upload part by part; complete only when the source checked out. Returns a download problem."""
    upload_id = c.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    try:
        parts: list[dict[str, Any]] = []
        # Read on past the expected size (a source that grew fails the size check below).
        while staged.fill(part_size) or not parts:
            with staged.path.open("rb") as f:
                n = len(parts) + 1
                r = c.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=f)
            parts.append({"ETag": r["ETag"], "PartNumber": n})
            if len(parts) > S3_MAX_PARTS:
                break
        if problem := verify.check_source(staged.h, size, etag):
            c.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            return problem
        c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})  # type: ignore[typeddict-item]
        return None
    except BaseException:
        with contextlib.suppress(Exception):
            c.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e) else type(e).__name__
