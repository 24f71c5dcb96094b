"""Small objects, in-process: one GET, one PUT, nothing on disk.

The GET brings the bytes and every header in one request (the s5cmd batch path needs a HEAD for the
headers, and s5cmd's `cp` HEADs each object again before its GET). The PUT carries Content-MD5, so the
server itself rejects a body that differs from what was read, and its ETag (the MD5 of a single PUT)
confirms the content without a HEAD afterwards. A single PUT is atomic: never a partial object.
Both requests go through the lean SigV4 client (:mod:`skymigrate.core.s3http`): botocore's own request
machinery cost ~5x the CPU per object, and CPU per object is what limits small-object throughput.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from dataclasses import replace

from skymigrate.agent import verify
from skymigrate.agent.work import (
    Context,
    ObjectMeta,
    Outcome,
    first_part_size,
    hasher_for,
    head,
    now,
    upload_part_size,
)
from skymigrate.core.etag import is_md5, parts_in
from skymigrate.core.manifest import ObjectEntry
from skymigrate.core.s3http import S3Error


def copy_direct(ctx: Context, entry: ObjectEntry) -> tuple[Outcome, ObjectMeta | None]:
    """Copy one small object; returns the outcome and the source's metadata when it was read."""
    t0 = now()
    src_b, dst_b = ctx.source.location.bucket, ctx.target.location.bucket
    skey, tkey = ctx.source_key(entry.key), ctx.target_key(entry.key)
    try:
        got = ctx.source_http.get(src_b, skey)
        meta = ObjectMeta.from_http(got.headers)
        body = got.body
    except S3Error as e:
        permanent = e.code == "NoSuchKey"
        why = "source object no longer exists" if permanent else str(e)
        return Outcome(entry, False, "direct", "download", why, permanent=permanent, seconds=now() - t0), None
    except Exception as e:
        return Outcome(entry, False, "direct", "download", _short(e), seconds=now() - t0), None
    ctx.on_bytes(entry.key, len(body) // 2)
    if len(body) != meta.size:
        return Outcome(
            entry, False, "direct", "download", f"read {len(body)} bytes, source object has {meta.size}"
        ), meta
    if is_md5(meta.etag) and not _encrypted(got.headers):
        # A single-part object's ETag is the MD5 of its bytes. Sent as Content-MD5, it makes the target
        # server check what we hold against the source's own checksum, and no pass of our CPU over the
        # bytes is needed (rclone does the same).
        md5, trusted = meta.etag, True
    else:
        if (parts_in(meta.etag) or 0) > 1:  # a multipart source: its ETag is comparable only at its part size
            with contextlib.suppress(Exception):
                meta = replace(meta, part_size=first_part_size(ctx.source_client, src_b, skey, meta.size))
        part, known = upload_part_size(meta, whole_mib=False)
        h = hasher_for(meta, part, known, single_put=True, verify=True)  # Content-MD5 needs the MD5 anyway
        h.update(body)
        if problem := verify.check_source(h, meta.size, meta.etag):
            return Outcome(entry, False, "direct", "download", problem, seconds=now() - t0), meta
        md5, trusted = h.md5() or "", False
    t_dl = now()
    headers = {"Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode(), **meta.http_headers()}
    try:
        etag = ctx.target_http.put(dst_b, tkey, body, headers).etag
    except S3Error as e:
        # Our bytes differ from the source's MD5: a bad download, unless they match it after all.
        bad_digest = trusted and e.code in ("BadDigest", "InvalidDigest")
        if bad_digest and hashlib.md5(body, usedforsecurity=False).hexdigest() != md5:
            why = f"content checksum does not match source ETag {md5}"
            return Outcome(entry, False, "direct", "download", why, seconds=now() - t0), meta
        return Outcome(entry, False, "direct", "upload", str(e), seconds=now() - t0), meta
    except Exception as e:
        return Outcome(entry, False, "direct", "upload", _short(e), seconds=now() - t0), meta
    if verify.comparable(etag):
        bad = None if etag == md5 else f"target ETag {etag} does not match the copied content ({md5})"
    else:  # an ETag that is not an MD5 (SSE-KMS, some stores): at least the size must match
        tgt = head(ctx.target_client, dst_b, tkey)
        bad = "target object missing after upload" if tgt is None else _size_problem(tgt.size, len(body))
    if bad:
        with contextlib.suppress(Exception):
            ctx.target_http.delete(dst_b, tkey)
        return Outcome(entry, False, "direct", "verify", bad, seconds=now() - t0), meta
    end = now()
    return (
        Outcome(entry, True, "direct", bytes=len(body), seconds=end - t0, download_s=t_dl - t0, upload_s=end - t_dl),
        meta,
    )


def _encrypted(headers: dict[str, str]) -> bool:
    """SSE-KMS and SSE-C objects have ETags that are not the MD5 of their bytes."""
    sse = headers.get("x-amz-server-side-encryption", "")
    return sse.startswith("aws:kms") or "x-amz-server-side-encryption-customer-algorithm" in headers


def _size_problem(got: int, want: int) -> str | None:
    return None if got == want else f"target has {got} bytes, expected {want}"


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e) else type(e).__name__
