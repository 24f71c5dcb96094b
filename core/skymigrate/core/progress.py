"""The heartbeat a node agent writes to progress/<rank>.json: the only thing the operator reads live."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

NodePhase = Literal["Pending", "Launching", "Running", "Succeeded", "Failed", "Lost"]


class NodeHeartbeat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rank: int
    phase: NodePhase = "Running"
    host: str = ""
    pid: int = 0
    started_at: float  # unix seconds
    updated_at: float
    objects_total: int = 0
    objects_done: int = 0  # verified in the target (copied or already identical)
    objects_skipped: int = 0  # of done: already present (journal or identical in target)
    bytes_skipped: int = 0
    objects_failed: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    bytes_in_flight: int = 0
    bytes_failed: int = 0
    speed_bps: float | None = None
    eta_s: float | None = None
    work_rate: float | None = None
    object_cost: float = 262144.0
    retries: int = 0
    ramdisk_used: int = 0
    ramdisk_capacity: int = 0
    disk_used: int = 0
    disk_capacity: int = 0
    last_error: str | None = None

    @property
    def remaining_bytes(self) -> int:
        return max(self.bytes_total - self.bytes_done - self.bytes_failed - self.bytes_in_flight, 0)

    @property
    def remaining_objects(self) -> int:
        return max(self.objects_total - self.objects_done - self.objects_failed, 0)

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")
