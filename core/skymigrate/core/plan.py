"""What the operator hands the agents through the state store: the run config and the plan summary."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from skymigrate.core.spec import MigrationSpec

CONFIG = "config.json"
PLAN = "plan.json"
REPORT = "report.json"


def shard_path(rank: int) -> str:
    return f"shards/{rank}.jsonl.gz"


def progress_path(rank: int) -> str:
    return f"progress/{rank}.json"


def failed_path(rank: int) -> str:
    return f"failed/{rank}.jsonl"


class RunConfig(BaseModel):
    """config.json: which migration this is and its spec (no secrets: those travel as env)."""

    model_config = ConfigDict(extra="ignore")

    namespace: str = "default"
    name: str
    uid: str
    spec: MigrationSpec


class ShardSummary(BaseModel):
    rank: int
    objects: int
    bytes: int


class Plan(BaseModel):
    """plan.json: totals and shard sizes, written once before any agent starts."""

    objects_listed: int
    bytes_listed: int
    objects_total: int  # to copy, after filters and objects already identical in the target
    bytes_total: int
    objects_present: int = 0  # already identical in the target at planning time
    bytes_present: int = 0
    objects_filtered: int = 0
    shards: list[ShardSummary]
    planned_at: float
    planning_seconds: float = 0.0
