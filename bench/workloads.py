"""The four workloads, generated deterministically from a seed, and their expected content digests.

Content is random (incompressible) but cheap to make: each object is drawn from one seeded random pool
at a key-dependent offset, and every MiB block starts with a stamp of (seed, key, block index), so two
objects never share a block and a swapped or reordered part changes the digest.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KiB, MiB = 1 << 10, 1 << 20
POOL_BYTES = 32 * MiB
BLOCK = MiB
NAMES = ("a", "b", "c", "d")


@dataclass(frozen=True, slots=True)
class Obj:
    key: str
    size: int


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    objects: tuple[Obj, ...]

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)


def _n(count: int, scale: float) -> int:
    return max(1, round(count * scale))


def _large(scale: float) -> int:
    # Stay well above the agent's default small-object threshold (8 MiB) so (c) keeps testing streams.
    return max(16 * MiB, int(512 * MiB * scale))


def build(name: str, scale: float = 1.0, seed: int = 1) -> Workload:
    """Workload ``name`` at ``scale`` (counts of small/medium objects and sizes of large ones shrink)."""
    if name == "a":
        n = _n(5000, scale)
        return Workload("a", f"{n} x 64 KiB", tuple(Obj(f"small/{i:06d}", 64 * KiB) for i in range(n)))
    if name == "b":
        n = _n(500, scale)
        return Workload("b", f"{n} x 1 MiB", tuple(Obj(f"medium/{i:06d}", MiB) for i in range(n)))
    if name == "c":
        size = _large(scale)
        return Workload("c", f"4 x {size // MiB} MiB", tuple(Obj(f"large/{i:06d}", size) for i in range(4)))
    if name == "d":
        return _mix(scale, seed)
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(NAMES)}")


def _mix(scale: float, seed: int) -> Workload:
    """Heavy-tailed: thousands of small objects, hundreds of medium ones, two huge ones (~2 GB at scale 1).
    Sizes jitter within each class so nothing is block-aligned; key order interleaves the classes."""
    rng = random.Random(f"{seed}:d")
    sizes: list[int] = []
    sizes += [int(64 * KiB * rng.uniform(0.25, 1.75)) for _ in range(_n(4000, scale))]
    sizes += [int(MiB * rng.uniform(0.5, 1.5)) for _ in range(_n(600, scale))]
    sizes += [int(_large(scale) * rng.uniform(0.9, 1.1)) for _ in range(2)]
    rng.shuffle(sizes)
    objs = tuple(Obj(f"mix/{i:06d}-{rng.getrandbits(32):08x}", s) for i, s in enumerate(sizes))
    gib = sum(sizes) / 1e9
    return Workload("d", f"mix of {len(sizes)} objects, heavy-tailed (~{gib:.1f} GB)", objs)


class Content:
    """Deterministic object bodies for one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        pool = random.Random(f"{seed}:pool").randbytes(POOL_BYTES)
        self._pool = pool + pool[:BLOCK]  # so a block that starts near the end does not wrap

    def blocks(self, key: str, size: int) -> Iterator[bytes]:
        start = int.from_bytes(hashlib.sha256(f"{self.seed}:{key}".encode()).digest()[:8], "little")
        for j, off in enumerate(range(0, size, BLOCK)):
            n = min(BLOCK, size - off)
            stamp = f"<{self.seed}:{key}:{j}>".encode()
            p = (start + j * 7919 * 4096) % POOL_BYTES
            yield (stamp + self._pool[p : p + BLOCK - len(stamp)])[:n]

    def write(self, key: str, size: int, path: Path) -> str:
        """Write one object to ``path``; returns its sha256."""
        h = hashlib.sha256()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for b in self.blocks(key, size):
                h.update(b)
                f.write(b)
        return h.hexdigest()


def materialize(w: Workload, content: Content, root: Path) -> dict[str, tuple[int, str]]:
    """Write every object of ``w`` under ``root`` (key = relative path); returns key -> (size, sha256)."""
    return {o.key: (o.size, content.write(o.key, o.size, root / o.key)) for o in w.objects}
