"""What this node has finished, kept in the state store so a restarted agent skips it.

S3 has no append, so each flush writes a new numbered segment; loading reads them all. A key is
journaled only after its target copy was verified, so the journal never claims a partial object.
"""

from __future__ import annotations

import json
import threading

from skymigrate.core.manifest import decode_jsonl_gz, encode_jsonl_gz
from skymigrate.core.statestore import StateStore


class Journal:
    def __init__(self, store: StateStore, rank: int) -> None:
        self.store, self.rank = store, rank
        self._prefix = f"journal/{rank}/"
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._seq = 0

    def load(self) -> set[str]:
        done: set[str] = set()
        for rel in self.store.list(self._prefix):
            name = rel.rsplit("/", 1)[-1]
            if not name.endswith(".jsonl.gz"):
                continue
            self._seq = max(self._seq, int(name.split(".")[0]) + 1)
            data = self.store.get(rel)
            if data:
                done.update(json.loads(line)["k"] for line in decode_jsonl_gz(data))
        return done

    def record(self, key: str) -> None:
        with self._lock:
            self._pending.append(key)

    def flush(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, []
            seq = self._seq
            self._seq += 1 if batch else 0
        if batch:
            try:
                self.store.put(
                    f"{self._prefix}{seq:08d}.jsonl.gz",
                    encode_jsonl_gz(json.dumps({"k": k}, ensure_ascii=False) for k in batch),
                )
            except Exception:
                with self._lock:  # keep them for the next flush
                    self._pending[:0] = batch
                raise
        return len(batch)
