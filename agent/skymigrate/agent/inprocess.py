"""Keys s5cmd cannot address exactly (a trailing '/', line breaks) are copied in-process with boto3.

The object goes through a staging file, so the upload knows its size and the bytes are verified before
any of them reach the target; large ones use a multipart upload that is aborted on any failure.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from skymigrate.agent import verify
from skymigrate.agent.work import Context, ObjectMeta, Outcome, hasher_for, head, now, upload_part_size
from skymigrate.core.manifest import ObjectEntry

CHUNK = 1 << 20


def copy_inprocess(ctx: Context, entry: ObjectEntry, meta: ObjectMeta, staging: Path) -> Outcome:
    t0 = now()
    src_b, dst_b = ctx.source.location.bucket, ctx.target.location.bucket
    skey, tkey = ctx.source_key(entry.key), ctx.target_key(entry.key)
    part_size, inferred = upload_part_size(meta)
    single = meta.size <= part_size
    h = hasher_for(meta, part_size, inferred, single_put=single, verify=ctx.transfer.verify_checksum)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            body = ctx.source_client.get_object(Bucket=src_b, Key=skey)["Body"]
            with staging.open("wb") as f:
                while chunk := body.read(CHUNK):
                    h.update(chunk)
                    f.write(chunk)
                    ctx.on_bytes(entry.key, len(chunk) // 2)
        except ctx.source_client.exceptions.NoSuchKey:
            return Outcome(entry, False, "inprocess", "download", "source object no longer exists", permanent=True)
        except Exception as e:
            return Outcome(entry, False, "inprocess", "download", _short(e), seconds=now() - t0)
        if problem := verify.check_source(h, meta.size, meta.etag):
            return Outcome(entry, False, "inprocess", "download", problem, seconds=now() - t0)
        t_dl = now()
        extra: dict[str, object] = {**meta.headers, "Metadata": meta.metadata}
        try:
            if single:
                ctx.target_client.put_object(Bucket=dst_b, Key=tkey, Body=staging.read_bytes(), **extra)  # type: ignore[arg-type]
            else:
                _multipart(ctx, dst_b, tkey, staging, part_size, extra)
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


def _multipart(ctx: Context, bucket: str, key: str, path: Path, part_size: int, extra: dict[str, object]) -> None:
    c = ctx.target_client
    upload_id = c.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]  # type: ignore[arg-type]
    try:
        parts = []
        with path.open("rb") as f:
            n = 1
            while chunk := f.read(part_size):
                r = c.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=chunk)
                parts.append({"ETag": r["ETag"], "PartNumber": n})
                n += 1
        c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})  # type: ignore[typeddict-item]
    except BaseException:
        with contextlib.suppress(Exception):
            c.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:300] if str(e) else type(e).__name__
