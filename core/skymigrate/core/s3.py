"""The one S3 client factory (boto3), for every S3 call the project makes in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from skymigrate.core.credentials import Credentials

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
