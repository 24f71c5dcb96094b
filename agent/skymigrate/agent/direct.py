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
from skymigrate.core.etag import parts_in
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
    if (parts_in(meta.etag) or 0) > 1:  # a multipart source: its ETag is comparable only at its part size
        with contextlib.suppress(Exception):
            meta = replace(meta, part_size=first_part_size(ctx.source_client, src_b, skey, meta.size))
    part, known = upload_part_size(meta, whole_mib=False)
    h = hasher_for(meta, part, known, single_put=True, verify=True)  # the MD5 is needed for Content-MD5 anyway
    h.update(body)
    if problem := verify.check_source(h, meta.size, meta.etag):
        return Outcome(entry, False, "direct", "download", problem, seconds=now() - t0), meta
    md5 = h.md5()
    assert md5 is not None
    t_dl = now()
    headers = {"Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode(), **meta.http_headers()}
    try:
        etag = ctx.target_http.put(dst_b, tkey, body, headers).etag
    except Exception as e:
        return Outcome(entry, False, "direct", "upload", _short(e), seconds=now() - t0), meta
    if verify.comparable(etag):
        bad = verify.check_target(h, h.total, etag)
    else:  # an ETag that is not an MD5 (SSE-KMS, some stores): at least the size must match
        tgt = head(ctx.target_client, dst_b, tkey)
        bad = "target object missing after upload" if tgt is None else verify.check_target(h, tgt.size, "")
    if bad:
        with contextlib.suppress(Exception):
            ctx.target_http.delete(dst_b, tkey)
        return Outcome(entry, False, "direct", "verify", bad, seconds=now() - t0), meta
    end = now()
    return (
        Outcome(entry, True, "direct", bytes=h.total, seconds=end - t0, download_s=t_dl - t0, upload_s=end - t_dl),
        meta,
    )


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e) else type(e).__name__
