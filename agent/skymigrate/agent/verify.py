"""Accept or reject a copied object: sizes always, checksums wherever the ETags are comparable."""

from __future__ import annotations

from skymigrate.core.etag import PartHasher, is_md5, parts_in


def comparable(etag: str) -> bool:
    """MD5 or multipart form; other ETags (SSE-KMS, some providers) say nothing about content."""
    e = etag.strip('"')
    return is_md5(e) or (parts_in(e) is not None and is_md5(e.rpartition("-")[0]))


def check_source(h: PartHasher, expected_size: int, src_etag: str) -> str | None:
    """Did we read the object the source holds? None when it checks out."""
    if h.total != expected_size:
        return f"read {h.total} bytes, source object has {expected_size}"
    if not src_etag or not comparable(src_etag):
        return None
    # A multipart ETag is comparable only at the source's own part size (a guessed one proves nothing).
    if parts_in(src_etag) is not None and not h.part_size_known:
        return None
    if h.matches(src_etag) is False:
        return f"content checksum does not match source ETag {src_etag.strip(chr(34))}"
    return None


def check_target(h: PartHasher, tgt_size: int, tgt_etag: str) -> str | None:
    """Does the target hold exactly the bytes we read?"""
    if tgt_size != h.total:
        return f"target has {tgt_size} bytes, expected {h.total}"
    if tgt_etag and comparable(tgt_etag) and h.matches(tgt_etag) is False:
        return f"target ETag {tgt_etag.strip(chr(34))} does not match the copied content"
    return None
