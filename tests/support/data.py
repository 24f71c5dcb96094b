"""Deterministic test data and byte-for-byte comparison of two buckets."""

from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def payload(key: str, size: int, seed: int = 0) -> bytes:
    """Distinct, reproducible content per key (so swapped objects cannot pass a checksum)."""
    rng = random.Random(f"{seed}:{key}:{size}")
    return rng.randbytes(size)


def put_all(
    client: Any,
    bucket: str,
    objects: dict[str, bytes],
    *,
    prefix: str = "",
    extra: dict[str, dict[str, Any]] | None = None,
) -> None:
    extra = extra or {}

    def put(kv: tuple[str, bytes]) -> None:
        k, body = kv
        client.put_object(Bucket=bucket, Key=prefix + k, Body=body, **extra.get(k, {}))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, objects.items()))


def digests(client: Any, bucket: str, prefix: str = "") -> dict[str, tuple[int, str]]:
    """key (relative to prefix) -> (size, sha256) for every object, read back in full."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]

    def one(k: str) -> tuple[str, tuple[int, str]]:
        body = client.get_object(Bucket=bucket, Key=k)["Body"].read()
        return k[len(prefix) :], (len(body), hashlib.sha256(body).hexdigest())

    with ThreadPoolExecutor(16) as pool:
        return dict(pool.map(one, keys))


def expected(objects: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    return {k: (len(v), hashlib.sha256(v).hexdigest()) for k, v in objects.items()}
