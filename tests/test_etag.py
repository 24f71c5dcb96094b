"""ETag arithmetic against what a real S3 server returns, part-size choice, and the verification rules."""

from __future__ import annotations

import hashlib

import pytest
from skymigrate.agent import verify
from skymigrate.core.etag import (
    S3_MAX_PART,
    S3_MAX_PARTS,
    S3_MIN_PART,
    MiB,
    PartHasher,
    choose_part_size,
    infer_part_size,
    is_md5,
    parts_in,
    upload_part_size,
)
from skymigrate.operator.locals3 import S3Server

from tests.conftest import new_bucket
from tests.support.agentkit import put_multipart
from tests.support.data import payload

GiB, TiB = 2**30, 2**40


def hashed(data: bytes, part_size: int, **kw: bool) -> PartHasher:
    h = PartHasher(part_size, **kw)
    for i in range(0, len(data), 777_777):  # chunk boundaries unrelated to part boundaries
        h.update(data[i : i + 777_777])
    return h


@pytest.mark.parametrize(
    ("size", "part"), [(12 * MiB + 5, 5 * MiB), (10 * MiB, 5 * MiB), (6 * MiB, 6 * MiB), (7 * MiB, 6 * MiB)]
)
def test_multipart_etag_matches_the_server(src_server: S3Server, size: int, part: int) -> None:
    client, bucket = src_server.client(), new_bucket(src_server, "etag")
    data = payload(f"e{size}", size)
    server = put_multipart(client, bucket, "k", data, part)
    assert parts_in(server) == -(-size // part)
    h = hashed(data, part)
    assert h.multipart_etag() == server and h.matches(f'"{server}"') is True
    assert h.md5() == hashlib.md5(data).hexdigest()  # noqa: S324 - S3's own checksum
    # Server-reported part size makes the choice exact; the count alone would have been a guess.
    chosen, known = upload_part_size(size, server, part, whole_mib=True)
    assert known and (chosen == part if parts_in(server) != 1 else chosen >= size)
    single = client.put_object(Bucket=bucket, Key="s", Body=data)["ETag"].strip('"')
    assert single == h.md5() and h.matches(single) is True and parts_in(single) is None


def test_a_different_part_size_gives_a_different_etag() -> None:
    data = payload("d", 11 * MiB)
    at6, at8 = hashed(data, 6 * MiB), hashed(data, 8 * MiB)
    assert parts_in(at6.multipart_etag() or "") == parts_in(at8.multipart_etag() or "") == 2
    assert at6.multipart_etag() != at8.multipart_etag()
    assert at8.matches(at6.multipart_etag() or "") is False


def test_guessed_part_size_is_not_trusted_for_verification() -> None:
    """The bug this guards: a 2-part ETag uploaded at 6 MiB was 'inferred' as 8 MiB and every copy failed."""
    data = payload("g", 11 * MiB)
    source_etag = hashed(data, 6 * MiB).multipart_etag() or ""
    part, known = upload_part_size(len(data), source_etag, None, whole_mib=True)  # the server did not say
    assert not known and -(-len(data) // part) == 2  # a plausible guess...
    h = hashed(data, part, md5=False, part_size_known=known)
    assert verify.check_source(h, len(data), source_etag) is None  # ...that must not fail a good copy
    # With the source's real part size, a wrong byte is caught.
    bad = bytearray(data)
    bad[5] ^= 1
    h_bad = hashed(bytes(bad), 6 * MiB, md5=False, part_size_known=True)
    assert (
        verify.check_source(h_bad, len(data), source_etag)
        == f"content checksum does not match source ETag {source_etag}"
    )
    assert verify.check_source(hashed(data, 6 * MiB, part_size_known=True), len(data), source_etag) is None
    assert "read 5 bytes" in (verify.check_source(hashed(data[:5], 6 * MiB), len(data), source_etag) or "")


def test_target_check_compares_sizes_and_comparable_etags() -> None:
    data = payload("t", 1000)
    h = hashed(data, 5 * MiB)
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324
    assert verify.check_target(h, 1000, md5) is None
    assert verify.check_target(h, 999, md5) == "target has 999 bytes, expected 1000"
    assert "does not match" in (verify.check_target(h, 1000, "0" * 32) or "")
    assert verify.check_target(h, 1000, "not-an-md5-kms-etag") is None  # says nothing about content: size only


@pytest.mark.parametrize(
    ("size", "etag", "reported", "whole_mib", "expect"),
    [
        (37 * MiB, "x" * 32 + "-5", 8 * MiB, True, (8 * MiB, True)),
        (37 * MiB, "x" * 32 + "-5", None, True, (8 * MiB, False)),  # 8 MiB is a common default: a guess
        (37 * MiB, "x" * 32 + "-5", 9 * MiB, True, (9 * MiB, True)),  # 9 MiB parts also give 5
        (37 * MiB, "x" * 32 + "-5", 7 * MiB, True, (8 * MiB, False)),  # 7 MiB would give 6 parts: not believed
        (20_000_000, "x" * 32 + "-4", 6_000_000, False, (6_000_000, True)),  # not whole MiB: in-process only
        (20_000_000, "x" * 32 + "-4", 6_000_000, True, (5 * MiB, False)),
        (20 * MiB, "x" * 32 + "-1", None, True, (64 * MiB, True)),  # one part: any size >= the object
        (100 * MiB, "x" * 32 + "-1", None, True, (100 * MiB, True)),
        (100 * MiB, "x" * 32, None, True, (64 * MiB, False)),  # single-part source
    ],
)
def test_upload_part_size(
    size: int, etag: str, reported: int | None, whole_mib: bool, expect: tuple[int, bool]
) -> None:
    assert upload_part_size(size, etag, reported, whole_mib=whole_mib) == expect


@pytest.mark.parametrize("size", [0, 1, 5 * GiB + 1, 100 * GiB, 5 * TiB])
def test_chosen_part_sizes_fit_s3_limits(size: int) -> None:
    ps = choose_part_size(size)
    assert S3_MIN_PART <= ps <= S3_MAX_PART and ps % MiB == 0
    assert -(-size // ps) <= S3_MAX_PARTS


def test_etag_helpers() -> None:
    assert parts_in('"abc-12"') == 12 and parts_in("abc") is None and parts_in("abc-x") is None
    assert is_md5('"' + "a" * 32 + '"') and not is_md5("a" * 31) and not is_md5("g" * 32)
    assert infer_part_size(37 * MiB, "x-5") == 8 * MiB
    assert infer_part_size(0, "x-5") is None and infer_part_size(10, "x") is None
    empty = PartHasher(5 * MiB)
    assert empty.md5() == hashlib.md5(b"").hexdigest()  # noqa: S324
    assert empty.multipart_etag() == hashlib.md5(hashlib.md5(b"").digest()).hexdigest() + "-1"  # noqa: S324
    nothing = PartHasher(5 * MiB, md5=False, parts=False)
    nothing.update(b"abc")
    assert nothing.total == 3 and not nothing.hashing and nothing.matches("a" * 32) is None
