"""Turn S3 errors into one readable line that says what is wrong and what to do; never a secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Condition reasons (CamelCase, as Kubernetes conditions expect).
UNREACHABLE = "EndpointUnreachable"
BAD_CREDENTIALS = "CredentialsRejected"
NO_BUCKET = "BucketNotFound"
NOT_WRITABLE = "BucketNotWritable"
ERROR = "S3Error"


class PreflightError(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def explain(e: BaseException, side: str, endpoint: str | None, bucket: str) -> PreflightError:
    where = endpoint or "AWS S3"
    if isinstance(e, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return PreflightError(UNREACHABLE, f"{side}: cannot reach {where}: check the endpoint URL and the network")
    if isinstance(e, NoCredentialsError | ProfileNotFound):
        return PreflightError(BAD_CREDENTIALS, f"{side}: no usable credentials ({type(e).__name__}): {e}")
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404", "NotFound"):
            return PreflightError(NO_BUCKET, f"{side}: bucket {bucket!r} does not exist at {where}")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AccessDenied", "Forbidden") or status == 403:
            return PreflightError(
                BAD_CREDENTIALS,
                f"{side}: {where} rejected the credentials for bucket {bucket!r} ({code or status}): "
                "check the access key pair or profile",
            )
        return PreflightError(ERROR, f"{side}: {where} answered {code or status} for bucket {bucket!r}")
    return PreflightError(ERROR, f"{side}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")


def check_bucket(
    client: S3Client, side: str, endpoint: str | None, bucket: str, *, write_probe_key: str | None = None
) -> None:
    """Reachable, credentials accepted, bucket exists (and writable, by writing then deleting an empty
    object at ``write_probe_key``, when given)."""
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as e:
        raise explain(e, side, endpoint, bucket) from None
    if write_probe_key is None:
        return
    try:
        client.put_object(Bucket=bucket, Key=write_probe_key, Body=b"")
        client.delete_object(Bucket=bucket, Key=write_probe_key)
    except Exception as e:
        err = explain(e, side, endpoint, bucket)
        if isinstance(e, ClientError) and err.reason == BAD_CREDENTIALS:
            err = PreflightError(NOT_WRITABLE, f"{side}: cannot write to bucket {bucket!r} at {endpoint}: {e}")
        raise err from None
