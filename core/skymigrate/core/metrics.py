"""The one metrics registry layout for agents and the operator (Prometheus naming: base units, _total).

Labels are migration, namespace, node and small enums: never object keys, never credentials.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NODE_LABELS = ("namespace", "migration", "node")
MIGRATION_LABELS = ("namespace", "migration")
PHASES = ("Pending", "Planning", "Launching", "Running", "Verifying", "Succeeded", "Failed", "Cancelled")


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry, namespace: str, migration: str, node: int) -> None:
        lv = {"namespace": namespace, "migration": migration, "node": str(node)}
        res = (*NODE_LABELS, "result")
        self.registry = registry
        self.bytes = Counter(
            "skymigrate_node_bytes",
            "Bytes finished by result (copied, skipped, failed)",
            res,
            registry=registry,
        )
        self.objects = Counter("skymigrate_node_objects", "Objects finished by result", res, registry=registry)
        self.retries = Counter(
            "skymigrate_node_retries", "Retries by operation", (*NODE_LABELS, "operation"), registry=registry
        )
        self.duration = Histogram(
            "skymigrate_node_object_duration_seconds",
            "Time to copy and verify one object, by method",
            (*NODE_LABELS, "method"),
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=registry,
        )
        g = {}
        for name, doc in {
            "speed_bytes_per_second": "Recent throughput (sliding window)",
            "eta_seconds": "Estimated seconds until this node finishes",
            "remaining_bytes": "Bytes not yet verified in the target",
            "remaining_objects": "Objects not yet verified in the target",
            "total_bytes": "Bytes in this node's shard",
            "total_objects": "Objects in this node's shard",
            "ramdisk_used_bytes": "RAM-disk bytes in use",
            "ramdisk_capacity_bytes": "RAM-disk capacity",
            "disk_used_bytes": "Root-disk bytes in use",
            "disk_capacity_bytes": "Root-disk capacity",
            "up": "1 while the agent runs",
        }.items():
            g[name] = Gauge(f"skymigrate_node_{name}", doc, NODE_LABELS, registry=registry).labels(**lv)
        self.speed, self.eta = g["speed_bytes_per_second"], g["eta_seconds"]
        self.remaining_bytes, self.remaining_objects = g["remaining_bytes"], g["remaining_objects"]
        self.total_bytes, self.total_objects = g["total_bytes"], g["total_objects"]
        self.ramdisk_used, self.ramdisk_capacity = g["ramdisk_used_bytes"], g["ramdisk_capacity_bytes"]
        self.disk_used, self.disk_capacity = g["disk_used_bytes"], g["disk_capacity_bytes"]
        self.up = g["up"]
        self._lv = lv
        # Create every series up front so dashboards see zeros instead of gaps.
        for r in ("copied", "skipped", "failed"):
            self.bytes.labels(**lv, result=r)
            self.objects.labels(**lv, result=r)
        for op in ("download", "upload", "verify"):
            self.retries.labels(**lv, operation=op)

    def finished(self, result: str, size: int, n: int = 1) -> None:
        self.bytes.labels(**self._lv, result=result).inc(size)
        self.objects.labels(**self._lv, result=result).inc(n)

    def retried(self, operation: str) -> None:
        self.retries.labels(**self._lv, operation=operation).inc()

    def observe(self, method: str, seconds: float) -> None:
        self.duration.labels(**self._lv, method=method).observe(seconds)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        L = MIGRATION_LABELS
        self.registry = registry
        self.objects = Gauge(
            "skymigrate_migration_objects",
            "Objects by state (total, done, failed)",
            (*L, "state"),
            registry=registry,
        )
        self.bytes = Gauge(
            "skymigrate_migration_bytes",
            "Bytes by state (total, done, failed)",
            (*L, "state"),
            registry=registry,
        )
        self.progress = Gauge(
            "skymigrate_migration_progress_ratio",
            "Bytes moved (verified plus in flight) / total (0-1)",
            L,
            registry=registry,
        )
        self.speed = Gauge("skymigrate_migration_speed_bytes_per_second", "Cluster throughput", L, registry=registry)
        self.eta = Gauge("skymigrate_migration_eta_seconds", "Cluster ETA (slowest node)", L, registry=registry)
        self.nodes = Gauge("skymigrate_migration_nodes", "Node count", L, registry=registry)
        self.phase = Gauge("skymigrate_migration_phase", "1 for the current phase", (*L, "phase"), registry=registry)

    def set_phase(self, namespace: str, migration: str, phase: str) -> None:
        for p in PHASES:
            self.phase.labels(namespace, migration, p).set(1 if p == phase else 0)

    def forget(self, namespace: str, migration: str) -> None:
        for m in (self.progress, self.speed, self.eta, self.nodes):
            m.remove(namespace, migration)
        for state in ("total", "done", "failed"):
            for g in (self.objects, self.bytes):
                with contextlib.suppress(KeyError):
                    g.remove(namespace, migration, state)
        for p in PHASES:
            with contextlib.suppress(KeyError):
                self.phase.remove(namespace, migration, p)
