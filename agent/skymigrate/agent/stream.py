"""Large objects: `s5cmd cat` -> this process -> `s5cmd pipe`, never staged on disk.

The relay in the middle is what makes a pipe safe. s5cmd can print an error and still exit 0, and `pipe`
completes whatever it read when its stdin closes, so a short read upstream would otherwise become a short
object downstream that looks complete. The relay counts every byte; only when the download exited
cleanly, delivered exactly the expected bytes and read the object we meant to copy is the upload's stdin
closed (which completes it); otherwise the upload is killed before completing, and any multipart upload
it left is aborted.

How the content is checked decides how the bytes travel:
- A multipart source whose part size the server told us is uploaded with the same parts, so the target
  server's part MD5s must make the source's ETag: the servers do the hashing. The relay moves all but the
  last part with splice(2), pipe to pipe, so those bytes never enter Python; it MD5s only the last part,
  which `pipe` cannot upload before its stdin closes. Before closing it, a HEAD proves the source did not
  change under the read, and ListParts gives the target's MD5s of the other parts: with ours of the last
  one they must make the source's ETag. After completing, the target's ETag must equal the source's.
- Otherwise (single-part source, unknown part size) the relay MD5s all it passes on, checks that against
  the source's ETag before completing and against the target's after.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import io
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO

from skymigrate.agent import verify
from skymigrate.agent.work import Context, ObjectMeta, Outcome, hasher_for, head, now, upload_part_size
from skymigrate.core import etag as etags
from skymigrate.core.etag import PartHasher, parts_in
from skymigrate.core.manifest import ObjectEntry

CHUNK = 1 << 20
MiB = 1 << 20
GONE = "source object no longer exists"
# Waiting for `pipe` to upload all but the last part before it may complete: how often to look (at most,
# at least), and how long without a new part before giving up on the check.
PARTS_POLL_S = 0.02
PARTS_POLL_MAX_S = 1.0
PARTS_STALL_S = 600.0


def _drain(stream: IO[bytes], sink: list[bytes]) -> threading.Thread:
    t = threading.Thread(target=lambda: sink.append(stream.read()), daemon=True)
    t.start()
    return t


def _err_text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", "replace").strip()


# The headers s5cmd can set on upload (it has no flag for Content-Language).
FLAGS = {
    "ContentType": "--content-type",
    "ContentEncoding": "--content-encoding",
    "ContentDisposition": "--content-disposition",
    "CacheControl": "--cache-control",
}


def s5cmd_can_carry(meta: ObjectMeta) -> bool:
    """Can s5cmd reproduce every header of this object? If not, it takes the in-process path."""
    return all(k in FLAGS for k in meta.headers)


def meta_flags(meta: ObjectMeta) -> list[str]:
    out: list[str] = []
    for field, flag in FLAGS.items():
        if field in meta.headers:
            out += [flag, meta.headers[field]]
    for k, v in meta.metadata.items():
        out += ["--metadata", f"{k}={v}"]
    return out


def servers_verify(meta: ObjectMeta, known: bool) -> bool:
    """Does equal source and target ETags prove equal bytes? Only for a multipart source ETag (MD5-based)
    uploaded at the source's own part size: then both servers hashed the same parts."""
    return known and (parts_in(meta.etag) or 0) > 1 and verify.comparable(meta.etag)


def copy_stream(ctx: Context, entry: ObjectEntry, meta: ObjectMeta) -> Outcome:
    t0 = now()
    src_url, dst_url = ctx.source.url(entry.key), ctx.target.url(entry.key)
    part_size, known = upload_part_size(meta, whole_mib=True)  # s5cmd's -p takes MiB
    checking = ctx.transfer.verify_checksum
    by_servers = checking and servers_verify(meta, known)
    h = hasher_for(meta, part_size, known, single_put=False, verify=checking and not by_servers)
    p_mib = str(part_size // MiB)
    conc = str(ctx.part_concurrency)
    # One GET of the whole object. With more GET streams `s5cmd cat` holds whole ranges that arrived out of
    # order in memory while the (slower) upload drains its stdout, 80-170 MB per stream; with one it writes
    # as it reads (~17 MB) and costs ~10 % less CPU. Download ranges need not match the upload's parts, and
    # every range costs the source server (versitygw, moto) a request's work: one range is cheapest. On
    # loopback one stream outruns `pipe -c 4` (bench/FINDINGS.md).
    whole_mib = str(max(1, -(-meta.size // MiB)))
    cat_cmd = [*ctx.source.args(), "cat", "--raw", "-c", "1", "-p", whole_mib, src_url]
    pipe_cmd = [*ctx.target.args(), "pipe", "--raw", "-c", conc, "-p", p_mib, *meta_flags(meta), dst_url]
    how = "splice" if not h.hashing else "md5 relay"
    ctx.debug(f"   Streaming: s5cmd cat {src_url} | {how} | s5cmd pipe -p {p_mib} {dst_url}")
    cat = subprocess.Popen(cat_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ctx.source.env())
    pipe = subprocess.Popen(
        pipe_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ctx.target.env()
    )
    assert cat.stdout and cat.stderr and pipe.stdin and pipe.stdout and pipe.stderr
    for fd in (cat.stdout.fileno(), pipe.stdin.fileno()):  # 1 MiB pipes: a sixteenth of the syscalls
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)
    cat_err: list[bytes] = []
    pipe_err: list[bytes] = []
    pipe_out: list[bytes] = []
    drains = [_drain(cat.stderr, cat_err), _drain(pipe.stderr, pipe_err), _drain(pipe.stdout, pipe_out)]
    try:
        progress = functools.partial(ctx.on_bytes, entry.key)
        last = PartHasher(part_size, md5=by_servers, parts=False)  # the last part's MD5, see _parts_problem
        if h.hashing:
            moved, upload_broken = _relay_copy(cat.stdout, pipe.stdin, h, progress)
        else:  # all but the last part spliced (all of it when nothing is checked), the rest through `last`
            cut = ((parts_in(meta.etag) or 1) - 1) * part_size if by_servers else meta.size
            moved, upload_broken = _relay_counting(cat, pipe, cut, last, progress)
        if upload_broken:
            cat.kill()
        cat_rc = cat.wait()
        drains[0].join()
        cat_msg = _err_text(cat_err)
        download_s = now() - t0
        problem = None
        if not upload_broken:
            if cat_rc != 0 or "ERROR" in cat_msg:
                problem = f"s5cmd cat exited {cat_rc}: {cat_msg or 'no message'}"
            elif moved != meta.size:
                problem = f"read {moved} bytes, source object has {meta.size}"
            elif h.hashing:
                problem = verify.check_source(h, meta.size, meta.etag)
            elif by_servers:
                part_s = part_size * download_s / max(moved, 1)  # the relay ran at the upload's pace
                problem = _source_unchanged(ctx, entry.key, meta) or _parts_problem(
                    ctx, entry.key, meta, last, pipe, part_s
                )
        if problem or upload_broken:
            _abort(ctx, pipe, entry.key)
            for d in drains:
                d.join(timeout=5)
            if upload_broken:
                msg = f"s5cmd pipe failed: {_err_text(pipe_err) or 'closed its input'}"
                return Outcome(entry, False, "stream", "upload", msg, seconds=now() - t0)
            why = problem or ""
            gone = "not found" in why.lower() or "NoSuchKey" in why or why == GONE
            return Outcome(entry, False, "stream", "download", problem, permanent=gone, seconds=now() - t0)
        pipe.stdin.close()  # the only path that completes the upload
        pipe_rc = pipe.wait()
        for d in drains:
            d.join()
        pipe_msg = _err_text(pipe_err)
        if pipe_rc != 0 or "ERROR" in pipe_msg:
            return Outcome(
                entry, False, "stream", "upload", f"s5cmd pipe exited {pipe_rc}: {pipe_msg}", seconds=now() - t0
            )
        got = head(ctx.target_client, ctx.target.location.bucket, ctx.target_key(entry.key))
        if got is None:
            bad: str | None = "target object missing after upload"
        elif h.hashing:
            bad = verify.check_target(h, got.size, got.etag)
        else:
            bad = _check_target(got, meta, etags_too=by_servers)
        if bad:
            # Never leave a wrong object looking complete.
            with contextlib.suppress(Exception):
                ctx.target_client.delete_object(Bucket=ctx.target.location.bucket, Key=ctx.target_key(entry.key))
            return Outcome(entry, False, "stream", "verify", bad, seconds=now() - t0)
        total = now() - t0
        return Outcome(entry, True, "stream", bytes=moved, seconds=total, download_s=download_s, upload_s=total)
    finally:
        for p in (cat, pipe):
            if p.poll() is None:
                p.kill()
                p.wait()


def _relay_counting(
    cat: subprocess.Popen[bytes],
    pipe: subprocess.Popen[bytes],
    cut: int,
    last: PartHasher,
    progress: Callable[[int], object],
) -> tuple[int, bool]:
    """The first ``cut`` bytes by splice (copied where it is refused), the rest through ``last``: (bytes
    moved, upload side gone)."""
    assert cat.stdout and pipe.stdin
    counter = PartHasher(last.part_size, md5=False, parts=False)
    spliced = _relay_splice(cat.stdout.fileno(), pipe.stdin.fileno(), progress, cut)
    moved, broken = spliced or _relay_copy(cat.stdout, pipe.stdin, counter, progress, cut)
    if broken:
        return moved, True
    rest, broken = _relay_copy(cat.stdout, pipe.stdin, last, progress)
    return moved + rest, broken


def _relay_splice(src: int, dst: int, progress: Callable[[int], object], limit: int) -> tuple[int, bool] | None:
    """Move up to ``limit`` bytes from pipe to pipe inside the kernel, counting them: (bytes moved, upload
    side gone). None, before any byte moved, when splice(2) is not to be had (not Linux, some sandboxes)."""
    moved = 0
    while moved < limit:
        try:
            n = os.splice(src, dst, min(CHUNK, limit - moved))
        except BrokenPipeError:
            return moved, True
        except (AttributeError, OSError) as e:
            if moved == 0 and (isinstance(e, AttributeError) or e.errno in (errno.EINVAL, errno.ENOSYS)):
                return None
            raise
        if n == 0:
            break
        moved += n
        progress(n)
    return moved, False


def _relay_copy(
    src: IO[bytes], dst: IO[bytes], h: PartHasher, progress: Callable[[int], object], limit: int | None = None
) -> tuple[int, bool]:
    """Pass bytes on through this process, feeding ``h`` (which may only count), up to ``limit`` or the
    end: (bytes moved, upload side gone)."""
    assert isinstance(src, io.BufferedReader)
    moved = 0
    while (want := CHUNK if limit is None else min(CHUNK, limit - moved)) and (chunk := src.read1(want)):
        h.update(chunk)
        moved += len(chunk)
        try:
            dst.write(chunk)
        except BrokenPipeError:
            return moved, True
        progress(len(chunk))
    return moved, False


def _source_unchanged(ctx: Context, key: str, meta: ObjectMeta) -> str | None:
    """The bytes were counted, not hashed: did they come from the object we planned to copy? A HEAD after
    the read sees any replacement that happened before or during it (a different ETag)."""
    from botocore.exceptions import ClientError

    try:
        now_head = ctx.source_client.head_object(Bucket=ctx.source.location.bucket, Key=ctx.source_key(key))
    except Exception as e:  # unverified: the upload must not complete, whatever went wrong
        if isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return GONE
        return f"HEAD source after the read: {str(e).splitlines()[0][:200]}"
    size, etag = int(now_head["ContentLength"]), str(now_head.get("ETag", "")).strip('"')
    if (size, etag) != (meta.size, meta.etag):
        return f"source object changed during the copy (ETag {meta.etag} -> {etag}, {meta.size} -> {size} bytes)"
    return None


def _parts_problem(
    ctx: Context, key: str, meta: ObjectMeta, last: PartHasher, pipe: subprocess.Popen[bytes], part_seconds: float
) -> str | None:
    """Before the upload may complete, do its parts make the source's ETag? The target server's MD5s of
    parts 1..n-1 (ListParts, once `pipe` has uploaded them) and ours of the last part, which `pipe` holds
    until its stdin closes. Where the target cannot list parts, the check after completing stands alone."""
    n = parts_in(meta.etag) or 0
    try:
        listed = _wait_for_parts(ctx, ctx.target_key(key), n - 1, pipe, part_seconds)
    except Exception as e:  # no ListParts here: only the ETag check after completion
        ctx.debug(f"   Parts of {key} not listed before completing ({str(e).splitlines()[0][:200]})")
        return None
    if listed is None:
        return "s5cmd pipe stopped before uploading every part"
    digests = [bytes.fromhex(listed[i]) for i in range(1, n)] + [bytes.fromhex(last.md5() or "")]
    made = f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{n}"
    if made != meta.etag:
        return f"content checksum does not match source ETag {meta.etag} (parts as the target received them)"
    return None


def _wait_for_parts(
    ctx: Context, tkey: str, count: int, pipe: subprocess.Popen[bytes], part_seconds: float
) -> dict[int, str] | None:
    """Part number -> MD5 hex of the first ``count`` parts of the upload `pipe` started, once all are in
    (``part_seconds``: about how long one part takes to upload). None if `pipe` exits first; raises if the
    target cannot list them (or stalls for PARTS_STALL_S)."""
    client, bucket = ctx.target_client, ctx.target.location.bucket
    upload_id = None
    parts: dict[int, str] = {}
    last_change = now()
    while True:
        if pipe.poll() is not None:
            return None
        if upload_id is None:
            ups = [u for u in client.list_multipart_uploads(Bucket=bucket, Prefix=tkey).get("Uploads", [])]
            mine = sorted((u for u in ups if u.get("Key") == tkey), key=lambda u: u["Initiated"])
            upload_id = mine[-1]["UploadId"] if mine else None
        if upload_id is not None:
            got = _list_parts(ctx, tkey, upload_id)
            if len(got) > len(parts):
                last_change = now()
            parts = got
        missing = sum(1 for i in range(1, count + 1) if i not in parts)
        if not missing:
            for i in range(1, count + 1):
                if not etags.is_md5(parts[i]):
                    raise ValueError(f"part {i} ETag {parts[i]} is not an MD5")
            return parts
        if now() - last_change > PARTS_STALL_S:
            raise TimeoutError(f"{len(parts)} of {count} parts listed after {PARTS_STALL_S:.0f} s")
        # Each listing costs a request and ~4 ms of CPU: look again when the missing parts should be in.
        time.sleep(min(PARTS_POLL_MAX_S, max(PARTS_POLL_S, missing * part_seconds)))


def _list_parts(ctx: Context, tkey: str, upload_id: str) -> dict[int, str]:
    out: dict[int, str] = {}
    marker = 0
    while True:
        r = ctx.target_client.list_parts(
            Bucket=ctx.target.location.bucket, Key=tkey, UploadId=upload_id, PartNumberMarker=marker
        )
        out |= {int(p["PartNumber"]): str(p["ETag"]).strip('"') for p in r.get("Parts", [])}
        if not r.get("IsTruncated"):
            return out
        marker = int(r["NextPartNumberMarker"])


def _check_target(got: ObjectMeta, meta: ObjectMeta, *, etags_too: bool) -> str | None:
    """The target after an unhashed copy: its size, and its ETag (the target server's own MD5s of the
    parts it received) against the source's when they are comparable."""
    if got.size != meta.size:
        return f"target has {got.size} bytes, expected {meta.size}"
    comparable = verify.comparable(got.etag) and parts_in(got.etag) is not None
    if etags_too and comparable and got.etag != meta.etag:
        return f"target ETag {got.etag} differs from the source's {meta.etag}: the bytes differ"
    return None


def _abort(ctx: Context, pipe: subprocess.Popen[bytes], key: str) -> None:
    """Kill the upload before it completes, then abort the multipart upload it may have started."""
    pipe.kill()
    pipe.wait()
    abort_uploads(ctx, key)


def abort_uploads(ctx: Context, key: str) -> None:
    bucket, tkey = ctx.target.location.bucket, ctx.target_key(key)
    with contextlib.suppress(Exception):
        resp = ctx.target_client.list_multipart_uploads(Bucket=bucket, Prefix=tkey)
        for u in resp.get("Uploads", []):
            if u.get("Key") == tkey:
                ctx.target_client.abort_multipart_upload(Bucket=bucket, Key=tkey, UploadId=u["UploadId"])
