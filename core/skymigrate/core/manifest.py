"""Object entries and shard manifests (gzip'd JSON lines, so millions of keys stream in and out)."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    key: str  # relative to the source prefix; the target key is target.prefix + key
    size: int
    etag: str = ""

    def to_json(self) -> str:
        return json.dumps({"k": self.key, "s": self.size, "e": self.etag}, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ObjectEntry:
        d = json.loads(line)
        return cls(d["k"], int(d["s"]), d.get("e", ""))


def encode_jsonl_gz(lines: Iterable[str]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=5, mtime=0) as gz:
        for line in lines:
            gz.write(line.encode() + b"\n")
    return buf.getvalue()


def decode_jsonl_gz(data: bytes) -> Iterator[str]:
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
        for raw in gz:
            if raw.strip():
                yield raw.decode()


def encode_entries(entries: Iterable[ObjectEntry]) -> bytes:
    return encode_jsonl_gz(e.to_json() for e in entries)


def decode_entries(data: bytes) -> list[ObjectEntry]:
    return [ObjectEntry.from_json(line) for line in decode_jsonl_gz(data)]
