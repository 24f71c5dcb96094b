"""The lean SigV4 client against real servers: moto (IAM auth on) and versitygw (Go, what the bench uses).

Whatever it writes is read back through boto3, so both clients must agree on keys, headers and bytes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from skymigrate.core.credentials import Credentials
from skymigrate.core.s3 import make_http_client
from skymigrate.core.s3http import S3Error, S3HttpClient

from tests.conftest import new_bucket
from tests.support.data import payload
from tests.support.gos3 import running_gos3
from tests.support.motoserver import S3Server
from tests.test_agent_keys import AWKWARD


@pytest.fixture(scope="module")
def gos3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_gos3(tmp_path_factory.mktemp("gos3"), "LEANTESTKEY", "lean-test-secret-value") as s:
        yield S3Server(s.endpoint_url, s.access_key, s.secret_key, s.region)


@pytest.fixture(params=["moto", "versitygw"])
def server(request: pytest.FixtureRequest, src_server: S3Server) -> S3Server:
    return src_server if request.param == "moto" else request.getfixturevalue("gos3")  # type: ignore[no-any-return]


def lean(server: S3Server, secret: str | None = None) -> S3HttpClient:
    creds = Credentials(server.access_key, secret or server.secret_key)
    return make_http_client(server.endpoint_url, creds, server.region)


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def test_put_get_round_trip_with_headers_and_metadata(server: S3Server) -> None:
    bucket = new_bucket(server, "lean")
    c = lean(server)
    body = payload("round", 300_000)
    headers = {
        "Content-MD5": md5_b64(body),
        "Content-Type": "application/x-tar",
        "Content-Encoding": "gzip",
        "Content-Disposition": 'attachment; filename="a  b.tar"',
        "Cache-Control": "max-age=60",
        "x-amz-meta-owner": "team  blue",  # doubled space: SigV4 canonicalises it, the value must not change
        "x-amz-meta-empty-ish": "-",
    }
    put = c.put(bucket, "dir/obj.tar", body, headers)
    assert put.etag == hashlib.md5(body, usedforsecurity=False).hexdigest()

    seen = server.client().get_object(Bucket=bucket, Key="dir/obj.tar")
    assert seen["Body"].read() == body
    assert seen["ContentType"] == "application/x-tar" and seen["ContentEncoding"] == "gzip"
    assert seen["ContentDisposition"] == 'attachment; filename="a  b.tar"' and seen["CacheControl"] == "max-age=60"
    assert seen["Metadata"] == {"owner": "team  blue", "empty-ish": "-"}

    got = c.get(bucket, "dir/obj.tar")
    assert got.body == body and got.etag == put.etag
    assert got.headers["content-length"] == str(len(body)) and got.headers["x-amz-meta-owner"] == "team  blue"

    c.delete(bucket, "dir/obj.tar")
    with pytest.raises(ClientError):
        server.client().head_object(Bucket=bucket, Key="dir/obj.tar")


def test_awkward_keys_round_trip(src_server: S3Server) -> None:
    """Every key the agent tests copy, including unicode, `+%#?*[]`, leading, doubled and trailing `/`."""
    bucket = new_bucket(src_server, "lean")
    c = lean(src_server)
    for i, key in enumerate(AWKWARD):
        body = payload(key, i * 101)  # zero bytes for the first
        c.put(bucket, key, body, {"Content-MD5": md5_b64(body)})
    listed = {
        o["Key"]: o["Size"]
        for p in src_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in p.get("Contents", [])
    }
    assert listed == {k: i * 101 for i, k in enumerate(AWKWARD)}
    lean_listed = list(c.list_objects(bucket))
    assert {o.key: o.size for o in lean_listed} == listed and len(lean_listed) == len(AWKWARD)
    assert all(o.etag == hashlib.md5(payload(o.key, o.size), usedforsecurity=False).hexdigest() for o in lean_listed)
    for i, key in enumerate(AWKWARD):
        assert c.get(bucket, key).body == payload(key, i * 101), key


def test_bad_digest_stores_nothing(gos3: S3Server) -> None:
    """The server refuses a body that differs from its Content-MD5. (moto ignores Content-MD5; the agent's
    ETag comparison after the PUT is what catches a changed body there.)"""
    server = gos3
    bucket = new_bucket(server, "lean")
    with pytest.raises(S3Error) as e:
        lean(server).put(bucket, "k", b"the real bytes", {"Content-MD5": md5_b64(b"other bytes")})
    assert e.value.status == 400 and e.value.code in ("BadDigest", "InvalidDigest")
    with pytest.raises(ClientError):
        server.client().head_object(Bucket=bucket, Key="k")


def test_errors_name_the_problem_and_never_the_secret(server: S3Server) -> None:
    bucket = new_bucket(server, "lean")
    with pytest.raises(S3Error) as missing:
        lean(server).get(bucket, "no/such/key")
    assert missing.value.code == "NoSuchKey" and missing.value.status == 404

    with pytest.raises(S3Error) as no_bucket:
        lean(server).get("no-such-bucket-here", "k")
    assert no_bucket.value.code == "NoSuchBucket"

    wrong = "wrong-secret-value-123456"
    with pytest.raises(S3Error) as denied:
        lean(server, secret=wrong).get(bucket, "k")
    assert denied.value.status == 403 and denied.value.code in ("SignatureDoesNotMatch", "AccessDenied")
    for text in (str(denied.value), repr(denied.value)):
        assert wrong not in text and server.secret_key not in text


def test_profile_credentials_are_resolved_like_boto3(
    src_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds_file = tmp_path / "credentials"
    creds_file.write_text(
        f"[migrate-src]\naws_access_key_id = {src_server.access_key}\naws_secret_access_key = {src_server.secret_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds_file))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    bucket = new_bucket(src_server, "lean")
    c = make_http_client(src_server.endpoint_url, Credentials(profile="migrate-src"), src_server.region)
    c.put(bucket, "p", b"via profile", {})
    assert src_server.client().get_object(Bucket=bucket, Key="p")["Body"].read() == b"via profile"


def test_one_client_serves_many_threads(server: S3Server) -> None:
    """Each thread has its own kept-alive connection; bodies never cross between threads."""
    from concurrent.futures import ThreadPoolExecutor

    bucket = new_bucket(server, "lean")
    c = lean(server)
    bodies = {f"t/{i}": payload(f"t{i}", 10_000 + i * 513) for i in range(64)}

    def one(kv: tuple[str, bytes]) -> bytes:
        k, v = kv
        c.put(bucket, k, v, {"Content-MD5": md5_b64(v)})
        return c.get(bucket, k).body

    with ThreadPoolExecutor(8) as pool:
        back = list(pool.map(one, bodies.items()))
    assert back == list(bodies.values())


def test_listing_pages_through_thousands_of_keys_under_a_prefix(gos3: S3Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bucket = new_bucket(gos3, "lean")
    c = lean(gos3)
    keys = [f"in/{i:05d}" for i in range(2345)] + ["in-file", "inside/x", "out/1"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: c.put(bucket, k, k.encode(), {}), keys))
    listed = list(c.list_objects(bucket, "in/"))
    assert [o.key for o in listed] == sorted(k for k in keys if k.startswith("in/"))  # 3 pages, in order
    assert all(o.size == len(o.key) and o.last_modified is not None for o in listed)
    assert len(list(c.list_objects(bucket))) == len(keys)
    assert list(c.list_objects(bucket, "nothing/")) == []
