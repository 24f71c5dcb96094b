"""Large objects: `s5cmd cat` -> this process -> `s5cmd pipe`, never staged on disk.

The relay in the middle is what makes a pipe safe. It counts and hashes every byte; s5cmd can print an
error and still exit 0, and `pipe` completes whatever it read when its stdin closes, so a short read
upstream would otherwise become a short object downstream that looks complete. Only when the download
exited cleanly *and* delivered exactly the expected bytes is the upload's stdin closed (which completes
it); otherwise the upload is killed before completing, and any multipart upload it left is aborted.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import subprocess
import threading
from typing import IO

from skymigrate.agent import verify
from skymigrate.agent.work import Context, ObjectMeta, Outcome, hasher_for, head, now, upload_part_size
from skymigrate.core.manifest import ObjectEntry

CHUNK = 1 << 20
MiB = 1 << 20
# Download ranges need not match the upload's parts; larger ones mean fewer requests (and some servers,
# moto among them, pay for every range with a pass over the whole object).
DOWNLOAD_RANGE_MIB = 64


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


def copy_stream(ctx: Context, entry: ObjectEntry, meta: ObjectMeta) -> Outcome:
    t0 = now()
    src_url, dst_url = ctx.source.url(entry.key), ctx.target.url(entry.key)
    part_size, known = upload_part_size(meta, whole_mib=True)  # s5cmd's -p takes MiB
    h = hasher_for(meta, part_size, known, single_put=False, verify=ctx.transfer.verify_checksum)
    p_mib = str(part_size // MiB)
    conc = str(ctx.part_concurrency)
    dl_mib = str(max(part_size // MiB, DOWNLOAD_RANGE_MIB))
    # `s5cmd cat` buffers every range it fetched ahead of the (usually slower) upload: half the part
    # concurrency on the GET side keeps a stream near 150 MB of memory instead of ~350 MB (bench/FINDINGS.md).
    cat_conc = str(max(1, ctx.part_concurrency // 2))
    cat_cmd = [*ctx.source.args(), "cat", "--raw", "-c", cat_conc, "-p", dl_mib, src_url]
    pipe_cmd = [*ctx.target.args(), "pipe", "--raw", "-c", conc, "-p", p_mib, *meta_flags(meta), dst_url]
    ctx.debug(f"   Streaming: s5cmd cat {src_url} | relay | s5cmd pipe -p {p_mib} {dst_url}")
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
    upload_broken = False
    try:
        src = cat.stdout
        assert isinstance(src, io.BufferedReader)
        while chunk := src.read1(CHUNK):
            h.update(chunk)
            try:
                pipe.stdin.write(chunk)
            except BrokenPipeError:
                upload_broken = True
                break
            ctx.on_bytes(entry.key, len(chunk))
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
            else:
                problem = verify.check_source(h, meta.size, meta.etag)
        if problem or upload_broken:
            _abort(ctx, pipe, entry.key)
            for d in drains:
                d.join(timeout=5)
            if upload_broken:
                msg = f"s5cmd pipe failed: {_err_text(pipe_err) or 'closed its input'}"
                return Outcome(entry, False, "stream", "upload", msg, seconds=now() - t0)
            gone = "not found" in (problem or "").lower() or "NoSuchKey" in (problem or "")
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
        bad = "target object missing after upload" if got is None else verify.check_target(h, got.size, got.etag)
        if bad:
            # Never leave a wrong object looking complete.
            with contextlib.suppress(Exception):
                ctx.target_client.delete_object(Bucket=ctx.target.location.bucket, Key=ctx.target_key(entry.key))
            return Outcome(entry, False, "stream", "verify", bad, seconds=now() - t0)
        total = now() - t0
        return Outcome(entry, True, "stream", bytes=h.total, seconds=total, download_s=download_s, upload_s=total)
    finally:
        for p in (cat, pipe):
            if p.poll() is None:
                p.kill()
                p.wait()


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
