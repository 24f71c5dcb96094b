"""Write dashboards/skymigrate.json, the Grafana dashboard (run: python dashboards/generate.py).

Kept as code so panels stay uniform; the JSON is committed and copied into the chart by
scripts/sync-chart.sh. Metric names come from core/skymigrate/core/metrics.py: skymigrate_migration_*
from the operator (labels namespace, migration), skymigrate_node_* from the agents (plus node).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("skymigrate.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
# Selectors for the dashboard variables (multi-value: Grafana expands them to a|b regexes).
M = 'namespace=~"$namespace", migration=~"$migration"'
N = f'{M}, node=~"$node"'
RATE = "[$__rate_interval]"

_ids = itertools.count(1)


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(
    kind: str,
    title: str,
    desc: str,
    queries: list[tuple[str, str]],
    pos: tuple[int, int, int, int],
    unit: str = "short",
    **extra: Any,
) -> dict[str, Any]:
    x, y, w, h = pos
    p: dict[str, Any] = {
        "id": next(_ids),
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [target(e, lg, chr(ord("A") + i)) for i, (e, lg) in enumerate(queries)],
        "fieldConfig": {"defaults": {"unit": unit, **extra.pop("defaults", {})}, "overrides": []},
        "options": extra.pop("options", {}),
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"].setdefault("custom", {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"})
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value", **p["options"]}
    p.update(extra)
    return p


def row(title: str, y: int) -> dict[str, Any]:
    return {
        "id": next(_ids),
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": query,  # the classic string form: every Grafana version reads it
        "refresh": 2,  # on time-range change: new migrations appear without a reload
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def panels() -> list[dict[str, Any]]:
    ps: list[dict[str, Any]] = [row("Cluster (operator)", 0)]
    ps += [
        panel(
            "stat",
            "Phase",
            "Current phase of each migration.",
            [
                (
                    f"max by (namespace, migration, phase) (skymigrate_migration_phase{{{M}}} == 1)",
                    "{{migration}}: {{phase}}",
                )
            ],
            (0, 1, 4, 4),
            options={"textMode": "name"},
        ),
        panel(
            "gauge",
            "Progress",
            "Bytes verified in the target / bytes to copy.",
            [(f"skymigrate_migration_progress_ratio{{{M}}}", "{{migration}}")],
            (4, 1, 4, 4),
            unit="percentunit",
            defaults={"min": 0, "max": 1},
        ),
        panel(
            "stat",
            "Cluster ETA",
            "Time until the slowest node finishes.",
            [(f"skymigrate_migration_eta_seconds{{{M}}}", "{{migration}}")],
            (8, 1, 4, 4),
            unit="dtdurations",
        ),
        panel(
            "stat",
            "Cluster speed",
            "Sum of the nodes' smoothed throughput.",
            [(f"skymigrate_migration_speed_bytes_per_second{{{M}}}", "{{migration}}")],
            (12, 1, 4, 4),
            unit="Bps",
        ),
        panel(
            "stat",
            "Nodes",
            "Node agents of the migration.",
            [(f"skymigrate_migration_nodes{{{M}}}", "{{migration}}")],
            (16, 1, 2, 4),
        ),
        panel(
            "stat",
            "Objects",
            "Objects to copy, verified in the target, and failed.",
            [(f"sum by (state) (skymigrate_migration_objects{{{M}}})", "{{state}}")],
            (18, 1, 3, 4),
        ),
        panel(
            "stat",
            "Bytes",
            "Bytes to copy, verified in the target, and failed.",
            [(f"sum by (state) (skymigrate_migration_bytes{{{M}}})", "{{state}}")],
            (21, 1, 3, 4),
            unit="bytes",
        ),
        panel(
            "timeseries",
            "Cluster progress",
            "Operator's view and the same ratio summed from the agents.",
            [
                (f"skymigrate_migration_progress_ratio{{{M}}}", "{{migration}}"),
                (
                    f"sum by (namespace, migration) (skymigrate_node_total_bytes{{{N}}} - skymigrate_node_remaining_bytes{{{N}}})"
                    f" / clamp_min(sum by (namespace, migration) (skymigrate_node_total_bytes{{{N}}}), 1)",
                    "{{migration}} (agents)",
                ),
            ],
            (0, 5, 12, 8),
            unit="percentunit",
            defaults={"min": 0, "max": 1},
        ),
        panel(
            "timeseries",
            "Cluster ETA",
            "The cluster finishes when its slowest node does.",
            [
                (f"skymigrate_migration_eta_seconds{{{M}}}", "{{migration}}"),
                (f"max by (namespace, migration) (skymigrate_node_eta_seconds{{{N}}})", "{{migration}} (slowest node)"),
            ],
            (12, 5, 12, 8),
            unit="s",
        ),
    ]
    ps.append(row("Throughput (agents)", 13))
    ps += [
        panel(
            "timeseries",
            "Bytes/s per node and total",
            "Bytes verified in the target per second.",
            [
                (f'sum by (node) (rate(skymigrate_node_bytes_total{{{N}, result="copied"}}{RATE}))', "node {{node}}"),
                (f'sum(rate(skymigrate_node_bytes_total{{{N}, result="copied"}}{RATE}))', "total"),
            ],
            (0, 14, 12, 8),
            unit="Bps",
        ),
        panel(
            "timeseries",
            "Smoothed speed (ETA basis)",
            "Each agent's sliding-window speed, and the cluster sum.",
            [
                (f"skymigrate_node_speed_bytes_per_second{{{N}}}", "node {{node}}"),
                (f"skymigrate_migration_speed_bytes_per_second{{{M}}}", "{{migration}} (operator)"),
            ],
            (12, 14, 12, 8),
            unit="Bps",
        ),
        panel(
            "timeseries",
            "Objects/s by result",
            "Copied, skipped (already in the target) and failed objects per second.",
            [(f"sum by (result) (rate(skymigrate_node_objects_total{{{N}}}{RATE}))", "{{result}}")],
            (0, 22, 12, 8),
            unit="ops",
        ),
        panel(
            "timeseries",
            "Object duration by method",
            "Time to copy and verify one object (batch or stream).",
            [
                (
                    f"histogram_quantile(0.5, sum by (le, method) "
                    f"(rate(skymigrate_node_object_duration_seconds_bucket{{{N}}}{RATE})))",
                    "p50 {{method}}",
                ),
                (
                    f"histogram_quantile(0.95, sum by (le, method) "
                    f"(rate(skymigrate_node_object_duration_seconds_bucket{{{N}}}{RATE})))",
                    "p95 {{method}}",
                ),
            ],
            (12, 22, 12, 8),
            unit="s",
        ),
    ]
    ps.append(row("Objects and ETA per node (agents)", 30))
    ps += [
        panel(
            "timeseries",
            "Objects done / failed",
            "Finished objects by result (agents) and the operator's totals.",
            [
                (f"sum by (result) (skymigrate_node_objects_total{{{N}}})", "{{result}}"),
                (f'sum by (state) (skymigrate_migration_objects{{{M}, state=~"done|failed"}})', "{{state}} (operator)"),
            ],
            (0, 31, 8, 8),
        ),
        panel(
            "bargauge",
            "Node progress",
            "Bytes verified / shard bytes, per node.",
            [
                (
                    f"1 - skymigrate_node_remaining_bytes{{{N}}} / clamp_min(skymigrate_node_total_bytes{{{N}}}, 1)",
                    "node {{node}}",
                )
            ],
            (8, 31, 8, 8),
            unit="percentunit",
            defaults={"min": 0, "max": 1},
            options={
                "orientation": "horizontal",
                "displayMode": "gradient",
                "reduceOptions": {"calcs": ["lastNotNull"]},
            },
        ),
        panel(
            "timeseries",
            "Node ETAs",
            "Each node's remaining work over its recent rate.",
            [(f"skymigrate_node_eta_seconds{{{N}}}", "node {{node}}")],
            (16, 31, 8, 8),
            unit="s",
        ),
        panel(
            "timeseries",
            "Remaining bytes per node",
            "Bytes not yet verified in the target.",
            [(f"skymigrate_node_remaining_bytes{{{N}}}", "node {{node}}")],
            (0, 39, 12, 8),
            unit="bytes",
        ),
        panel(
            "timeseries",
            "Remaining objects per node",
            "Objects not yet verified in the target.",
            [(f"skymigrate_node_remaining_objects{{{N}}}", "node {{node}}")],
            (12, 39, 12, 8),
        ),
    ]
    ps.append(row("RAM disk and disk (agents)", 47))
    ps += [
        panel(
            "timeseries",
            "RAM-disk use per node",
            "Staging area in use; agents clean at 95 % and 98 %.",
            [
                (
                    f"skymigrate_node_ramdisk_used_bytes{{{N}}} / skymigrate_node_ramdisk_capacity_bytes{{{N}}}",
                    "node {{node}}",
                )
            ],
            (0, 48, 6, 8),
            unit="percentunit",
            defaults={"min": 0, "max": 1},
        ),
        panel(
            "timeseries",
            "RAM-disk bytes per node",
            "Used and capacity.",
            [
                (f"skymigrate_node_ramdisk_used_bytes{{{N}}}", "used {{node}}"),
                (f"skymigrate_node_ramdisk_capacity_bytes{{{N}}}", "capacity {{node}}"),
            ],
            (6, 48, 6, 8),
            unit="bytes",
        ),
        panel(
            "timeseries",
            "Disk use per node",
            "Root disk of each node.",
            [(f"skymigrate_node_disk_used_bytes{{{N}}} / skymigrate_node_disk_capacity_bytes{{{N}}}", "node {{node}}")],
            (12, 48, 6, 8),
            unit="percentunit",
            defaults={"min": 0, "max": 1},
        ),
        panel(
            "timeseries",
            "Disk bytes per node",
            "Used and capacity.",
            [
                (f"skymigrate_node_disk_used_bytes{{{N}}}", "used {{node}}"),
                (f"skymigrate_node_disk_capacity_bytes{{{N}}}", "capacity {{node}}"),
            ],
            (18, 48, 6, 8),
            unit="bytes",
        ),
    ]
    ps.append(row("Retries and failures (agents)", 56))
    ps += [
        panel(
            "timeseries",
            "Retries by operation",
            "Retried downloads, uploads and verifications.",
            [(f"sum by (operation) (increase(skymigrate_node_retries_total{{{N}}}{RATE}))", "{{operation}}")],
            (0, 57, 8, 8),
        ),
        panel(
            "timeseries",
            "Failed objects over time",
            "Objects given up after all retries, per node.",
            [
                (
                    f'sum by (node) (increase(skymigrate_node_objects_total{{{N}, result="failed"}}{RATE}))',
                    "node {{node}}",
                ),
                (
                    f'sum by (node) (increase(skymigrate_node_bytes_total{{{N}, result="failed"}}{RATE}))',
                    "bytes node {{node}}",
                ),
            ],
            (8, 57, 8, 8),
        ),
        panel(
            "stat",
            "Agents running",
            "Agents reporting up (their /metrics reachable and running).",
            [(f"sum by (namespace, migration) (skymigrate_node_up{{{N}}})", "{{migration}}")],
            (16, 57, 8, 8),
        ),
    ]
    return ps


def dashboard() -> dict[str, Any]:
    sel = '{__name__=~"skymigrate_node_up|skymigrate_migration_nodes"'
    return {
        "uid": "skymigrate",
        "title": "skymigrate migrations",
        "description": "Bucket migrations: cluster progress and ETA, per-node throughput, RAM disk, retries, failures.",
        "tags": ["skymigrate", "s3"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                variable("namespace", "Namespace", f"label_values({sel}}}, namespace)"),
                variable("migration", "Migration", f'label_values({sel}, namespace=~"$namespace"}}, migration)'),
                variable(
                    "node",
                    "Node",
                    'label_values(skymigrate_node_up{namespace=~"$namespace", migration=~"$migration"}, node)',
                ),
            ]
        },
        "annotations": {"list": []},
        "panels": panels(),
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
