"""Large objects: `s5cmd cat` -> this process -> `s5cmd pipe`, never staged on disk.

The relay in the middle is what makes a pipe safe. s5cmd can print an error and still exit 0, and `pipe`
completes whatever it read when its stdin closes, so a short read upstream would otherwise become a short
object downstream that looks complete. The relay counts every byte; only when the download exited
cleanly, delivered exactly the expected bytes and read the object we meant to copy is the upload's stdin
closed (which completes it); otherwise the upload is killed before completing, and any multipart upload
it left is aborted.

How the content is checked decides how the bytes travel:
- A multipart source whose part size the server told us is uploaded with the same parts, so the target
  server's ETag (MD5s of the parts it received) must equal the source's: the two servers do the hashing.
  The relay only counts, with splice(2) from pipe to pipe so the bytes never enter Python, and a HEAD of
  the source after the read proves the object did not change under it before the upload may complete.
- Otherwise (single-part source, unknown part size) the relay MD5s what it passes on, checks it against
  the source's ETag before completing and against the target's after.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import io
import os
import subprocess
import threading
from collections.abc import Callable
from typing import IO

from skymigrate.agent import verify
from skymigrate.agent.work import Context, ObjectMeta, Outcome, hasher_for, head, now, upload_part_size
from skymigrate.core.etag import PartHasher, parts_in
from skymigrate.core.manifest import ObjectEntry

CHUNK = 1 << 20
MiB = 1 << 20
GONE = "source object no longer exists"


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
    src_fd, dst_fd = cat.stdout.fileno(), pipe.stdin.fileno()
    for fd in (src_fd, dst_fd):  # 1 MiB pipes: a sixteenth of the syscalls
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)
    cat_err: list[bytes] = []
    pipe_err: list[bytes] = []
    pipe_out: list[bytes] = []
    drains = [_drain(cat.stderr, cat_err), _drain(pipe.stderr, pipe_err), _drain(pipe.stdout, pipe_out)]
    try:
        progress = functools.partial(ctx.on_bytes, entry.key)
        spliced = None if h.hashing else _relay_splice(src_fd, dst_fd, progress)
        # Without splice (hashing, or none to be had), the copying relay; its hasher may only count.
        moved, upload_broken = spliced or _relay_hashing(cat.stdout, pipe.stdin, h, progress)
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
                problem = _source_unchanged(ctx, entry.key, meta)
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


def _relay_splice(src: int, dst: int, progress: Callable[[int], object]) -> tuple[int, bool] | None:
    """Move bytes from pipe to pipe inside the kernel, counting them: (bytes moved, upload side gone).
    None, before any byte moved, when splice(2) is not to be had (not Linux, some sandboxes)."""
    moved = 0
    while True:
        try:
            n = os.splice(src, dst, CHUNK)
        except BrokenPipeError:
            return moved, True
        except (AttributeError, OSError) as e:
            if moved == 0 and (isinstance(e, AttributeError) or e.errno in (errno.EINVAL, errno.ENOSYS)):
                return None
            raise
        if n == 0:
            return moved, False
        moved += n
        progress(n)


def _relay_hashing(
    src: IO[bytes], dst: IO[bytes], h: PartHasher, progress: Callable[[int], object]
) -> tuple[int, bool]:
    """Hash what passes through: (bytes moved, upload side gone)."""
    assert isinstance(src, io.BufferedReader)
    while chunk := src.read1(CHUNK):
        h.update(chunk)
        try:
            dst.write(chunk)
        except BrokenPipeError:
            return h.total, True
        progress(len(chunk))
    return h.total, False


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
