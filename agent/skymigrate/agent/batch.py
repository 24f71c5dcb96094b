"""Small objects: one `s5cmd run` downloads a batch into the RAM-disk staging area, one uploads it,
one reads the targets' metadata back. Per-object process cost is paid once per batch, not per object.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path

from skymigrate.agent import verify
from skymigrate.agent.s5cmd import quote, run_batch
from skymigrate.agent.stream import meta_flags
from skymigrate.agent.work import Context, ObjectMeta, Outcome, hasher_for, now, upload_part_size
from skymigrate.core.etag import PartHasher
from skymigrate.core.manifest import ObjectEntry

READ = 1 << 20


def hash_file(path: Path, meta: ObjectMeta, verify_checksum: bool) -> PartHasher:

    part, known = upload_part_size(meta, whole_mib=False)
    h = hasher_for(meta, part, known, single_put=True, verify=verify_checksum)
    with path.open("rb") as f:
        if h.hashing:
            while chunk := f.read(READ):
                h.update(chunk)
        else:
            h.total = path.stat().st_size
    return h


def copy_batch(ctx: Context, items: Sequence[tuple[ObjectEntry, ObjectMeta]], staging: Path) -> list[Outcome]:
    t0 = now()
    out: list[Outcome] = []
    staging.mkdir(parents=True, exist_ok=True)
    try:
        files = {e.key: staging / str(i) for i, (e, _) in enumerate(items)}
        dl = run_batch(
            ctx.source,
            [f"cp --raw {quote(ctx.source.url(e.key))} {quote(str(files[e.key]))}" for e, _ in items],
            workers=ctx.batch_workers,
        )
        t_dl = now()
        hashed: list[tuple[ObjectEntry, ObjectMeta, PartHasher]] = []
        for e, m in items:
            f = files[e.key]
            if not f.exists():
                msg = dl.error_for(ctx.source.url(e.key))
                gone = "not found" in msg.lower()
                out.append(Outcome(e, False, "batch", "download", f"s5cmd cp: {msg}", permanent=gone))
                continue
            h = hash_file(f, m, ctx.transfer.verify_checksum)
            if problem := verify.check_source(h, m.size, m.etag):
                out.append(Outcome(e, False, "batch", "download", problem))
                continue
            hashed.append((e, m, h))
            ctx.on_bytes(e.key, m.size // 2)
        dl_bytes = sum(h.total for _, _, h in hashed)
        ctx.debug(f"   Batch download: {len(hashed)}/{len(items)} objects, {_speed(dl_bytes, t_dl - t0)}")

        up = run_batch(
            ctx.target,
            [
                " ".join(
                    ["cp", "--raw", *map(quote, meta_flags(m)), quote(str(files[e.key])), quote(ctx.target.url(e.key))]
                )
                for e, m, _ in hashed
            ],
            workers=ctx.batch_workers,
        )
        uploaded = {str(r.get("destination")) for r in up.records if r.get("success")}
        t_up = now()
        ctx.debug(f"   Batch upload: {len(uploaded)}/{len(hashed)} objects, {_speed(dl_bytes, t_up - t_dl)}")
        check = [(e, m, h) for e, m, h in hashed if ctx.target.url(e.key) in uploaded]
        for e, _, _ in hashed:
            if ctx.target.url(e.key) not in uploaded:
                out.append(Outcome(e, False, "batch", "upload", f"s5cmd cp: {up.error_for(ctx.target.url(e.key))}"))
        heads = run_batch(
            ctx.target, [f"head --raw {quote(ctx.target.url(e.key))}" for e, _, _ in check], workers=ctx.batch_workers
        )
        seen = {str(r.get("key")): r for r in heads.records}
        per_obj = (now() - t0) / max(len(items), 1)
        for e, m, h in check:
            r = seen.get(ctx.target.url(e.key))
            bad = _check_head(r, m, h)
            if bad:
                with contextlib.suppress(Exception):
                    ctx.target_client.delete_object(Bucket=ctx.target.location.bucket, Key=ctx.target_key(e.key))
                out.append(Outcome(e, False, "batch", "verify", bad))
            else:
                out.append(
                    Outcome(
                        e, True, "batch", bytes=h.total, seconds=per_obj, download_s=t_dl - t0, upload_s=t_up - t_dl
                    )
                )
        return out
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_head(r: dict[str, object] | None, m: ObjectMeta, h: PartHasher) -> str | None:
    if r is None:
        return "target object missing after upload"
    size = r.get("size", 0)  # s5cmd omits a zero size from its JSON
    bad = verify.check_target(h, size if isinstance(size, int) else -1, str(r.get("etag", "")))
    if bad:
        return bad
    if r.get("content_type", "") != m.headers.get("ContentType", r.get("content_type", "")):
        return f"target Content-Type {r.get('content_type')!r} differs from source {m.headers.get('ContentType')!r}"
    got_meta = r.get("metadata") or {}
    if {k.lower(): v for k, v in dict(got_meta).items()} != {k.lower(): v for k, v in m.metadata.items()}:  # type: ignore[call-overload]
        return "target user metadata differs from source"
    return None


def _speed(n: int, seconds: float) -> str:
    return f"{n / max(seconds, 1e-9) / 1e6:.2f} MB/s"
