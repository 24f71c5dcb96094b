"""The one S3 client factory: boto3 clients for every S3 call the project makes in-process, and the
lean SigV4 clients (:mod:`skymigrate.core.s3http`) the agent's small-object path GETs and PUTs with."""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from skymigrate.core.credentials import Credentials, CredentialsError
from skymigrate.core.s3http import Keys, KeySource, S3HttpClient

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def make_client(
    endpoint: str | None,
    creds: Credentials,
    region: str | None = None,
    *,
    path_style: bool = True,
    max_pool: int = 32,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    attempts: int = 3,
) -> S3Client:
    """A thread-safe client. Short connect timeout so an unreachable endpoint fails fast in preflight."""
    config = Config(
        region_name=region or "us-east-1",
        max_pool_connections=max_pool,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path" if path_style else "auto"},
        signature_version=UNSIGNED if creds.anonymous else None,
        # S3-compatible stores (MinIO, Nebius, moto) differ on the newer CRC checksums; MD5/ETag is universal.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session(
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
        profile_name=creds.profile,
    )
    return session.client("s3", endpoint_url=endpoint, config=config)


def make_http_client(
    endpoint: str | None,
    creds: Credentials,
    region: str | None = None,
    *,
    path_style: bool = True,
    timeout: float = 60.0,
) -> S3HttpClient:
    """A lean client with the same endpoint, credentials (keys, profile or anonymous) and TLS trust as
    :func:`make_client`: AWS's regional endpoint when none is given, botocore's CA bundle (or
    ``AWS_CA_BUNDLE``)."""
    region = region or "us-east-1"
    url = endpoint or f"https://s3.{region}.amazonaws.com"
    ctx = None
    if url.startswith("https:"):
        from botocore.httpsession import where

        ctx = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or where())
    return S3HttpClient(url, _key_source(creds), region, path_style=path_style, timeout=timeout, ssl_context=ctx)


def _key_source(creds: Credentials) -> KeySource:
    if creds.anonymous:
        return lambda: None
    if creds.access_key_id and creds.secret_access_key:
        keys = Keys(creds.access_key_id, creds.secret_access_key, creds.session_token)
        return lambda: keys
    # A profile: botocore resolves it (and refreshes role or SSO credentials when they expire).
    resolved = boto3.session.Session(profile_name=creds.profile).get_credentials()
    if resolved is None:
        raise CredentialsError(f"profile {creds.profile!r} has no credentials; check ~/.aws/credentials or config")

    def frozen() -> Keys:
        f = resolved.get_frozen_credentials()
        return Keys(str(f.access_key), str(f.secret_key), f.token)

    return frozen
