"""Shards balanced by cost (bytes plus a per-object cost), on mixes where naive splits are far off."""

from __future__ import annotations

import random

import pytest
from skymigrate.core import sharding


def heavy_tailed(n: int, seed: int = 42) -> list[int]:
    """Pareto sizes (alpha 1.2, from 100 kB): most objects small, a few very large."""
    rng = random.Random(seed)
    return [int(100_000 * rng.paretovariate(1.2)) for _ in range(n)]


@pytest.mark.parametrize("nodes", [4, 8, 16])
def test_heavy_tailed_mix_is_balanced_by_bytes(nodes: int) -> None:
    sizes = heavy_tailed(20_000)
    shard_of = sharding.assign(sizes, nodes)
    assert len(shard_of) == len(sizes) and set(shard_of) == set(range(nodes))
    stats = sharding.stats(sizes, shard_of, nodes)
    assert sum(s.bytes for s in stats) == sum(sizes) and sum(s.objects for s in stats) == len(sizes)
    assert sharding.imbalance(stats) <= 1.05
    counts = [s.objects for s in stats]
    assert max(counts) <= 1.1 * len(sizes) / nodes  # object counts even out too (the per-object cost)


def test_naive_splits_are_far_worse_on_the_same_mix() -> None:
    sizes, nodes = heavy_tailed(20_000), 8
    lpt = sharding.imbalance(sharding.stats(sizes, sharding.assign(sizes, nodes), nodes))
    round_robin = sharding.imbalance(sharding.stats(sizes, [i % nodes for i in range(len(sizes))], nodes))
    ranges = sharding.imbalance(sharding.stats(sizes, [i * nodes // len(sizes) for i in range(len(sizes))], nodes))
    assert lpt < 1.01
    assert round_robin > 1.1 and ranges > 1.3


def test_per_object_cost_balances_few_large_against_many_small() -> None:
    gb = 10**9
    sizes = [gb] * 3 + [1000] * 20_000  # 20 MB of tiny files, but 20,000 objects' worth of requests
    stats = sharding.stats(sizes, sharding.assign(sizes, 4), 4)
    costs = [s.cost() for s in stats]
    assert max(costs) <= 1.05 * sum(costs) / 4
    small_only = [s for s in stats if s.bytes < gb]
    assert len(small_only) == 1 and 3000 < small_only[0].objects < 10_000  # the large-file nodes share the rest
    # Balanced by bytes alone, one node would get all 20,000 requests and still look "light".
    by_bytes = sharding.stats(sizes, sharding.assign(sizes, 4, object_cost=0), 4)
    assert max(s.objects for s in by_bytes) == 20_000


def test_edge_cases() -> None:
    assert list(sharding.assign([], 3)) == []
    assert list(sharding.assign([5, 6, 7], 1)) == [0, 0, 0]
    two = sharding.assign([10, 20], 5)  # more nodes than objects: some shards are empty
    assert sorted(two) == sorted(set(two)) and len(two) == 2
    with pytest.raises(ValueError, match="nodes must be >= 1"):
        sharding.assign([1], 0)
    assert sharding.imbalance([]) == 1.0
    assert sharding.imbalance(sharding.stats([0, 0], [0, 1], 2)) == 1.0
