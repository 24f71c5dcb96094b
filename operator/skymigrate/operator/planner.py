"""List the source and write the plan: shard manifests balanced by cost, plus totals.

Keys stream from the listing into a spool file; only their sizes stay in memory (8 bytes each), so a
bucket of millions of keys is planned in tens of megabytes. Sharding happens once the listing is
complete, because balancing needs every size.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from skymigrate.core import sharding
from skymigrate.core.manifest import ObjectEntry, encode_jsonl_gz
from skymigrate.core.plan import CONFIG, PLAN, Plan, RunConfig, ShardSummary, shard_path
from skymigrate.core.spec import FilterSpec, MigrationSpec
from skymigrate.core.statestore import StateStore

if TYPE_CHECKING:
    from skymigrate.core.s3http import S3HttpClient

log = logging.getLogger("skymigrate.operator")


def list_source(client: S3HttpClient, bucket: str, prefix: str) -> Iterator[tuple[str, int, str, datetime | None]]:
    """(key relative to prefix, size, etag, last modified), page by page."""
    for o in client.list_objects(bucket, prefix):
        yield o.key[len(prefix) :], o.size, o.etag, o.last_modified


def make_filter(f: FilterSpec) -> Callable[[str, int, datetime | None], bool]:
    after = datetime.fromisoformat(f.modified_after.replace("Z", "+00:00")) if f.modified_after else None

    def keep(key: str, size: int, modified: datetime | None) -> bool:
        if f.include and not any(fnmatch.fnmatchcase(key, p) for p in f.include):
            return False
        if any(fnmatch.fnmatchcase(key, p) for p in f.exclude):
            return False
        if f.min_size is not None and size < f.min_size:
            return False
        if f.max_size is not None and size > f.max_size:
            return False
        return not (after and modified and modified <= after)

    return keep


def write_plan(
    store: StateStore,
    config: RunConfig,
    listing: Iterable[tuple[str, int, str, datetime | None]],
    on_progress: Callable[[int, int], None] = lambda n, b: None,
) -> Plan:
    """Filter, shard and write config.json, shards/<r>.jsonl.gz and plan.json (last, as the commit mark)."""
    spec: MigrationSpec = config.spec
    t0 = time.monotonic()
    keep = make_filter(spec.filters)
    sizes = array("q")
    listed = listed_bytes = filtered = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for key, size, etag, modified in listing:
            listed += 1
            listed_bytes += size
            if not keep(key, size, modified):
                filtered += 1
                continue
            sizes.append(size)
            spool.write(ObjectEntry(key, size, etag).to_json() + "\n")
            if listed % 10000 == 0:
                on_progress(listed, listed_bytes)
        on_progress(listed, listed_bytes)
        shard_of = sharding.assign(sizes, spec.nodes)
        stats = sharding.stats(sizes, shard_of, spec.nodes)
        del sizes
        spool.seek(0)
        store.put(CONFIG, config.model_dump_json().encode())
        for rank in range(spec.nodes):
            spool.seek(0)
            store.put(shard_path(rank), encode_jsonl_gz(_lines_for(spool, shard_of, rank)))
    plan = Plan(
        objects_listed=listed,
        bytes_listed=listed_bytes,
        objects_total=sum(s.objects for s in stats),
        bytes_total=sum(s.bytes for s in stats),
        objects_filtered=filtered,
        shards=[ShardSummary(rank=s.rank, objects=s.objects, bytes=s.bytes) for s in stats],
        planned_at=time.time(),
        planning_seconds=time.monotonic() - t0,
    )
    store.put(PLAN, plan.model_dump_json().encode())
    log.info(
        "planned %d objects (%.2f GB) into %d shards in %.1fs (imbalance %.3f)",
        plan.objects_total,
        plan.bytes_total / 1e9,
        spec.nodes,
        plan.planning_seconds,
        sharding.imbalance(stats),
    )
    return plan


def _lines_for(spool: Iterable[str], shard_of: array[int], rank: int) -> Iterator[str]:
    for i, line in enumerate(spool):
        if shard_of[i] == rank:
            yield line.rstrip("\n")


def read_plan(store: StateStore) -> Plan | None:
    raw = store.get(PLAN)
    return Plan.model_validate_json(raw) if raw else None


def summary(plan: Plan) -> str:
    return json.dumps({"objects": plan.objects_total, "bytes": plan.bytes_total, "shards": len(plan.shards)})
