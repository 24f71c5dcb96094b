"""The Grafana dashboard against real data: a real Prometheus scrapes the operator and its agents during
a real migration between two moto S3 servers, and every PromQL expression of the dashboard, evaluated through
Prometheus's HTTP API, must return data.

The run is the product's own path: the real operator on a real kube-apiserver reconciles a Migration
with the local launcher; Prometheus scrapes only the operator, as it would in the cluster: the operator
serves its own skymigrate_migration_* and relays its agents' skymigrate_node_* (--relay-agent-metrics).
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from skymigrate.core.metrics import AgentMetrics, OperatorMetrics

from tests.conftest import new_bucket
from tests.support.data import digests, expected, payload, put_all
from tests.support.kube import KubeCluster, running_apiserver
from tests.support.motoserver import S3Server
from tests.support.operatorkit import OperatorProcess, get_migration, install_crd, kubectl
from tests.support.procs import LOOPBACK
from tests.support.prometheus import INSTALL_HINT, Prometheus, prometheus_binary, running_prometheus
from tests.support.throttle import throttled

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "dashboards" / "skymigrate.json"

NAMESPACE, MIGRATION, NODES = "prom-ns", "prom-mig", 2
OPERATOR_JOB = "skymigrate-operator"
# What Grafana puts in for $__rate_interval with a 1 s scrape interval on a ~2 h range.
RATE_INTERVAL = "10s"
# Scrapes needed before the evaluation point: a full rate window plus slack.
MIN_SCRAPED_SECONDS = 12.0
KiB, MiB = 1 << 10, 1 << 20
# The source is read through a link of this capacity, so the run lasts ~20 s on any machine.
SOURCE_LINK_BYTES_PER_SECOND = 2.5e6

# Metric families the dashboard deliberately leaves out (shown by other panels in another form).
NOT_ON_DASHBOARD = {"skymigrate_node_total_objects"}


# --------------------------------------------------------------------------- dashboard parsing
@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str

    @property
    def needs_operator(self) -> bool:
        return "skymigrate_migration_" in self.expr

    def __str__(self) -> str:
        return f"{self.panel!r} {self.ref}: {self.expr}"


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def queries() -> list[Query]:
    out: list[Query] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            walk(p.get("panels", []))
            out.extend(Query(p["title"], t["refId"], t["expr"]) for t in p.get("targets", []))

    walk(dashboard()["panels"])
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Expand dashboard variables as Grafana would for a single selected value."""
    values = {"__rate_interval": RATE_INTERVAL, "__interval": "1s", **variables}
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)
    assert "$" not in out, f"unexpanded variable in {out}"
    return out


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bskymigrate_[a-z_]+\b", expr))


def exported_families() -> dict[str, set[str]]:
    """Metric family -> sample names, from the real metrics classes (the single source of the names)."""
    reg = CollectorRegistry()
    m = AgentMetrics(reg, "ns", "mig", 0)
    m.observe("batch", 0.1)
    om = OperatorMetrics(reg)
    om.set_phase("ns", "mig", "Running")
    for g in (om.progress, om.speed, om.eta, om.nodes):
        g.labels("ns", "mig").set(1)
    for s in ("total", "done", "failed"):
        om.objects.labels("ns", "mig", s).set(1)
        om.bytes.labels("ns", "mig", s).set(1)
    return {f.name: {s.name for s in f.samples} for f in reg.collect()}


# --------------------------------------------------------------------------- static checks (no Prometheus)
def test_dashboard_names_only_metrics_that_exist_and_shows_all_of_them() -> None:
    families = exported_families()
    samples = set().union(*families.values())
    used: set[str] = set()
    for q in queries():
        names = metric_names(q.expr)
        unknown = names - samples
        assert not unknown, f"{q} uses metrics no exporter has: {sorted(unknown)}"
        used |= names
    for var in dashboard()["templating"]["list"]:
        used |= metric_names(str(var.get("query", "")))
    missing = {f for f, s in families.items() if not (s & used)} - NOT_ON_DASHBOARD
    assert not missing, f"metric families with no panel: {sorted(missing)}"


def test_dashboard_panels_have_unique_ids_and_variables() -> None:
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    names = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "namespace", "migration", "node"} <= names
    for q in queries():
        assert "$namespace" in q.expr and "$migration" in q.expr, f"{q} ignores the namespace/migration variables"


def test_dashboard_json_is_generated() -> None:
    """dashboards/skymigrate.json is the output of dashboards/generate.py (edit the generator, not the JSON)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dashboard_generate", REPO / "dashboards" / "generate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.dashboard() == dashboard(), "run: python dashboards/generate.py && scripts/sync-chart.sh"


# --------------------------------------------------------------------------- the live run
@dataclass(frozen=True)
class Scraped:
    prom: Prometheus
    at: float  # evaluation time: every agent was running and scraped for MIN_SCRAPED_SECONDS
    started: float
    total_bytes: int


def source_objects() -> dict[str, bytes]:
    """~56 MB: many batched small objects and a few streamed large ones (above the 8 MiB threshold)."""
    objs = {f"small/{i:04d}.bin": payload(f"s{i}", 64 * KiB + i) for i in range(480)}
    objs.update({f"large/{i:02d}.bin": payload(f"l{i}", 12 * MiB + i) for i in range(2)})
    return objs


def _count(prom: Prometheus, expr: str) -> int:
    r = prom.query(expr)
    return int(float(r[0]["value"][1])) if r else 0


def _secret(cluster: KubeCluster, name: str, server: S3Server) -> None:
    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
           "data": {"AWS_ACCESS_KEY_ID": b64(server.access_key), "AWS_SECRET_ACCESS_KEY": b64(server.secret_key)}}  # fmt: skip
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(doc))


def _migration(source_endpoint: str, src_bucket: str, dst: S3Server, dst_bucket: str, state: Path) -> dict[str, Any]:
    return {
        "apiVersion": "skymigrate.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": MIGRATION, "namespace": NAMESPACE},
        "spec": {
            "source": {"endpoint": source_endpoint, "bucket": src_bucket,
                       "credentials": {"secretRef": {"name": "src-keys"}}},
            "target": {"endpoint": dst.endpoint_url, "bucket": dst_bucket,
                       "credentials": {"secretRef": {"name": "dst-keys"}}},
            "nodes": NODES,
            "concurrency": 2,
            # Small batches: objects finish continuously, as in a real bucket of millions of keys.
            "transfer": {"batchMaxObjects": 20},
            "stateStore": {"url": f"file://{state}"},
            "progress": {"nodeIntervalSeconds": 1, "clusterIntervalSeconds": 1},
            "ramDisk": {"size": "1Gi"},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def scraped(src_server: S3Server, dst_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """The demo run: the real operator (on a real API server) runs a Migration with the local launcher;
    Prometheus scrapes the operator and, as they appear in the state store, the agents."""
    if prometheus_binary() is None:
        pytest.fail(f"prometheus not installed: {INSTALL_HINT}")
    work = tmp_path_factory.mktemp("prom")
    objects = source_objects()
    src_bucket, dst_bucket = new_bucket(src_server, "src"), new_bucket(dst_server, "dst")
    put_all(src_server.client(), src_bucket, objects)
    src_port = urllib.parse.urlsplit(src_server.endpoint_url).port
    assert src_port
    with ExitStack() as stack:
        link_port = stack.enter_context(throttled(src_port, SOURCE_LINK_BYTES_PER_SECOND))
        cluster = stack.enter_context(running_apiserver(work / "kube"))
        install_crd(cluster)
        kubectl(cluster, "create", "namespace", NAMESPACE)
        _secret(cluster, "src-keys", src_server)
        _secret(cluster, "dst-keys", dst_server)
        (work / "operator").mkdir()
        # As in the cluster: Prometheus reaches only the operator, which relays its local agents' metrics.
        operator = OperatorProcess(cluster, NAMESPACE, work / "operator", extra_args=("--relay-agent-metrics",))
        stack.callback(operator.stop)
        operator.start()
        prom = stack.enter_context(running_prometheus(work / "prometheus", [OPERATOR_JOB]))
        prom.set_targets(OPERATOR_JOB, [f"{LOOPBACK}:{operator.metrics_port}"])
        started = time.time()
        state = work / "state"
        doc = _migration(f"http://{LOOPBACK}:{link_port}", src_bucket, dst_server, dst_bucket, state)
        kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(doc))
        at, all_up, phase = _follow(cluster, prom, state)
        finished = time.time()
        assert phase == "Succeeded", f"migration ended {phase}:\n{operator.log()[-4000:]}"
        assert digests(dst_server.client(), dst_bucket) == expected(objects)
        assert at is not None, (
            f"migration ran {finished - started:.1f} s but its agents were all up and copying for less than "
            f"{MIN_SCRAPED_SECONDS} s (from {None if all_up is None else round(all_up - started, 1)} s): "
            "grow source_objects() or slow the link"
        )
        print(f"migration ran {finished - started:.1f} s; evaluating the dashboard at +{at - started:.1f} s")
        yield Scraped(prom, at, started, sum(map(len, objects.values())))


def _follow(cluster: KubeCluster, prom: Prometheus, state: Path) -> tuple[float | None, float | None, str]:
    """Watch the migration until it ends.

    Returns (a time at which operator and agents had been scraped, all up and copying, for
    MIN_SCRAPED_SECONDS; when that began; the final phase). Queries are evaluated at that time later,
    so agents exiting (their series go stale) cannot race with the checks.
    """
    sel = f'namespace="{NAMESPACE}", migration="{MIGRATION}"'
    all_up: float | None = None
    at: float | None = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        now = time.time()
        m = get_migration(cluster, NAMESPACE, MIGRATION) or {}
        phase = m.get("status", {}).get("phase", "")
        if phase in ("Succeeded", "Failed", "Cancelled"):
            return at, all_up, phase
        running = (
            phase == "Running"
            and _count(prom, f"count(skymigrate_node_up{{{sel}}} == 1)") == NODES
            and _count(prom, f'count(skymigrate_node_bytes_total{{{sel}, result="copied"}} > 0)') == NODES
            and _count(prom, f'count(skymigrate_migration_phase{{{sel}, phase="Running"}} == 1)') == 1
        )
        if running and all_up is None:
            all_up = now
        if running and all_up is not None and at is None and now - all_up >= MIN_SCRAPED_SECONDS:
            at = now
        time.sleep(0.5)
    raise AssertionError("migration did not finish within 300 s")


def _check(scraped: Scraped, qs: list[Query]) -> None:
    variables = {"namespace": NAMESPACE, "migration": MIGRATION, "node": ".*"}
    problems: list[str] = []
    for q in qs:
        result = scraped.prom.query(substitute(q.expr, variables), at=scraped.at)
        values = [float(s["value"][1]) for s in result]
        if not values:
            problems.append(f"no data: {q}")
        elif not any(math.isfinite(v) for v in values):
            problems.append(f"only NaN/Inf ({values}): {q}")
        elif any(s["metric"].get("namespace", NAMESPACE) != NAMESPACE for s in result):
            problems.append(f"other namespaces leak in: {q}")
    assert not problems, "\n".join(problems)


@pytest.mark.prometheus
@pytest.mark.kube
@pytest.mark.slow
def test_agent_panels_return_data(scraped: Scraped) -> None:
    qs = [q for q in queries() if not q.needs_operator]
    assert len(qs) >= 20
    _check(scraped, qs)


@pytest.mark.prometheus
@pytest.mark.kube
@pytest.mark.slow
def test_operator_panels_return_data(scraped: Scraped) -> None:
    qs = [q for q in queries() if q.needs_operator]
    assert len(qs) >= 10
    _check(scraped, qs)


@pytest.mark.prometheus
@pytest.mark.kube
@pytest.mark.slow
def test_dashboard_variables_list_the_migration(scraped: Scraped) -> None:
    """Each variable's label_values(selector, label) query, as Grafana runs it: the series API."""
    chosen = {"namespace": NAMESPACE, "migration": MIGRATION}
    expect = {"namespace": {NAMESPACE}, "migration": {MIGRATION}, "node": {str(r) for r in range(NODES)}}
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.*), (\w+)\)", var["query"])
        assert m, var["query"]
        selector, label = substitute(m.group(1), chosen), m.group(2)
        series = scraped.prom.series(selector, scraped.started, scraped.at)
        assert {s[label] for s in series if label in s} == expect[var["name"]], var["name"]


@pytest.mark.prometheus
@pytest.mark.kube
@pytest.mark.slow
def test_scraped_values_describe_the_migration(scraped: Scraped) -> None:
    """Not only some data: the numbers the panels show are the migration's own."""
    sel = f'namespace="{NAMESPACE}", migration="{MIGRATION}"'

    def value(expr: str) -> float:
        r = scraped.prom.query(expr, at=scraped.at)
        assert len(r) == 1, (expr, r)
        return float(r[0]["value"][1])

    assert value(f"sum(skymigrate_node_total_bytes{{{sel}}})") == scraped.total_bytes
    assert value(f"sum(skymigrate_node_up{{{sel}}})") == NODES
    done = value(f"sum(skymigrate_node_total_bytes{{{sel}}} - skymigrate_node_remaining_bytes{{{sel}}})")
    assert 0 < done < scraped.total_bytes  # evaluated mid-run
    assert value(f'sum(rate(skymigrate_node_bytes_total{{{sel}, result="copied"}}[{RATE_INTERVAL}]))') > 0
    assert value(f'sum(skymigrate_node_objects_total{{{sel}, result="failed"}})') == 0
    assert value(f"max(skymigrate_node_eta_seconds{{{sel}}})") > 0
    assert value(f"min(skymigrate_node_ramdisk_capacity_bytes{{{sel}}})") > 0
