"""The Helm chart with the real helm (built from Go modules) and a real kube-apiserver.

helm lint / template for default and non-default values, the values schema rejecting bad values, the
rendered objects accepted by the API server (server-side apply; dry-run, as no kubelet runs pods), a
real `helm install`, and the operator's RBAC checked with `kubectl auth can-i` as its ServiceAccount.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from skymigrate.operator import cli as operator_cli

from tests.support.kube import KubeCluster, running_apiserver
from tests.support.operatorkit import kubectl
from tests.support.tools import tool_path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "skymigrate"
QUICKSTART = REPO / "docs" / "quickstart-kind.md"
NS = "skymigrate-system"
Doc = dict[str, Any]

pytestmark = pytest.mark.helm

NON_DEFAULT: Doc = {
    "image": {"repository": "registry.example.com/acme/skymigrate", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "fullnameOverride": "sm-teams",
    "replicaCount": 2,
    "peering": {"enabled": True, "name": "skymigrate-teams"},
    "logLevel": "debug",
    "defaultLauncher": "skypilot",
    "watchNamespaces": ["team-a", "team-b"],
    "stateStore": {
        "url": "s3://skymigrate-state/prod",
        "endpoint": "https://storage.example.net",
        "region": "eu-north1",
        "credentialsSecret": {"name": "state-keys", "accessKeyIdKey": "ak", "secretAccessKeyKey": "sk"},
    },
    "skypilot": {"apiServerEndpoint": "http://skypilot-api.skypilot.svc:46580"},
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kps"}},
    "podMonitor": {"enabled": True, "interval": "20s"},
    "dashboard": {"namespace": "monitoring", "annotations": {"grafana_folder": "Storage"}},
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "8Gi"}},
    "workDir": {"medium": "Memory", "sizeLimit": "16Gi"},
    "extraEnv": [{"name": "SKYMIGRATE_EXTRA", "value": "1"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "migration", "effect": "NoSchedule"}],
}
VALUE_SETS = {"default": None, "non-default": NON_DEFAULT}


# --------------------------------------------------------------------------- helpers
def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(tool_path("helm")), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def values_args(values: Doc | None, tmp: Path) -> list[str]:
    if values is None:
        return []
    f = tmp / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    return ["-f", str(f)]


def render(values: Doc | None, tmp: Path, release: str = "skymigrate") -> list[Doc]:
    out = helm("template", release, str(CHART), "--namespace", NS, *values_args(values, tmp)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def index(docs: list[Doc]) -> dict[tuple[str, str, str], Doc]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


def one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[Doc]) -> Doc:
    c: Doc = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return c


def env_of(c: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def rules(doc: Doc) -> list[Doc]:
    r: list[Doc] = doc["rules"]
    return r


def verbs_for(doc: Doc, group: str, resource: str) -> set[str]:
    return {v for r in rules(doc) if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def quickstart_docs() -> list[Doc]:
    """Every object in the quickstart's ```yaml blocks."""
    blocks = re.findall(r"```yaml\n(.*?)```", QUICKSTART.read_text(), flags=re.S)
    return [d for b in blocks for d in yaml.safe_load_all(b) if d]


# --------------------------------------------------------------------------- files the chart copies
def test_chart_copies_match_their_sources() -> None:
    """Helm reads only the chart directory; scripts/sync-chart.sh copies the CRD and dashboard in."""
    pairs = [
        (REPO / "crds" / "migration.yaml", CHART / "crds" / "migration.yaml"),
        (REPO / "dashboards" / "skymigrate.json", CHART / "dashboards" / "skymigrate.json"),
    ]
    for src, copy in pairs:
        assert copy.read_bytes() == src.read_bytes(), f"{copy} differs from {src}: run scripts/sync-chart.sh"
    assert [p.name for p in (CHART / "crds").iterdir()] == ["migration.yaml"]


def test_dockerfile_matches_chart_defaults() -> None:
    """The image's user, work dir and liveness port are what the chart's Deployment assumes."""
    dockerfile = (REPO / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    assert re.search(rf"^USER {uid}:{values['podSecurityContext']['runAsGroup']}$", dockerfile, re.M)
    assert "WORKDIR /var/lib/skymigrate" in dockerfile
    assert f"--liveness=http://0.0.0.0:{values['health']['port']}/healthz" in dockerfile
    assert "setup-skypilot-env.sh" in dockerfile and "SKYMIGRATE_SKY_VENV=/opt/sky" in dockerfile


# --------------------------------------------------------------------------- lint and template
@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint(name: str, tmp_path: Path) -> None:
    r = helm("lint", "--strict", str(CHART), *values_args(VALUE_SETS[name], tmp_path))
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout


def test_default_render(tmp_path: Path) -> None:
    docs = render(None, tmp_path)
    assert sorted(d["kind"] for d in docs) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment", "ConfigMap"]
    )
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = container(docs)
    assert c["image"] == "skymigrate:0.1.0"  # the chart's appVersion
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert c["args"][:3] == ["operator", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090"]
    assert "--all-namespaces" in c["args"] and not any(a.startswith("--peering") for a in c["args"])
    args = operator_cli.parser().parse_args(c["args"])  # the real CLI accepts what the chart passes
    assert (args.command, args.all_namespaces, args.peering, args.metrics_port) == ("operator", True, None, 9090)

    # Probes hit kopf's liveness endpoint: the port the --liveness URL names.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    live = urllib.parse.urlsplit(c["args"][1].split("=", 1)[1])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert (get["path"], ports[get["port"]]) == (live.path, live.port), probe
    assert ports["metrics"] == 9090

    # Non-root, read-only root filesystem, no privilege escalation, no capabilities.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/tmp", "/var/lib/skymigrate"}
    assert all("emptyDir" in volumes[n] for n in mounts.values())
    assert c["workingDir"] == "/var/lib/skymigrate"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    env = env_of(c)
    assert env["SKYMIGRATE_STATE_URL"] == "file:///var/lib/skymigrate/state"
    assert env["SKYMIGRATE_RUN_DIR"].startswith("/var/lib/skymigrate/")
    assert env["SKYMIGRATE_DEFAULT_LAUNCHER"] == "local" and env["SKYMIGRATE_LOG_LEVEL"] == "info"
    assert "SKYPILOT_API_SERVER_ENDPOINT" not in env

    # The metrics Service reaches the pod's metrics port.
    svc = one(docs, "Service")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"

    # Cluster-wide RBAC when serving every namespace: exact resources and verbs, no wildcards.
    cr = one(docs, "ClusterRole")
    assert all("*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"] for r in rules(cr))
    assert verbs_for(cr, "skymigrate.io", "migrations") == {"get", "list", "watch", "patch"}
    assert verbs_for(cr, "skymigrate.io", "migrations/status") == {"get", "patch"}
    assert verbs_for(cr, "skymigrate.io", "migrations/finalizers") == {"update"}
    assert verbs_for(cr, "", "secrets") == {"get"}  # read the ones Migrations name; never list them
    assert verbs_for(cr, "", "events") == {"create", "patch"}
    assert verbs_for(cr, "apiextensions.k8s.io", "customresourcedefinitions") == {"get", "list", "watch"}
    assert {r for rule in rules(cr) for r in rule["resources"]} == {
        "customresourcedefinitions", "migrations", "migrations/status", "migrations/finalizers", "events", "secrets",
    }  # fmt: skip
    crb = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NS}]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]

    # The dashboard, labelled for the Grafana sidecar, is the repository's JSON.
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["skymigrate.json"]) == json.loads((REPO / "dashboards/skymigrate.json").read_text())


def test_non_default_render(tmp_path: Path) -> None:
    docs = render(NON_DEFAULT, tmp_path)
    idx = index(docs)
    dep = idx[("Deployment", NS, "sm-teams")]
    c = container(docs)
    assert c["image"] == "registry.example.com/acme/skymigrate:1.2.3" and c["imagePullPolicy"] == "Always"
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == NON_DEFAULT["nodeSelector"] and pod["tolerations"] == NON_DEFAULT["tolerations"]
    assert {"--namespace=team-a", "--namespace=team-b", "--peering=skymigrate-teams", "--verbose"} <= set(c["args"])
    assert "--all-namespaces" not in c["args"]
    args = operator_cli.parser().parse_args(c["args"])
    assert (args.namespace, args.all_namespaces, args.peering) == (["team-a", "team-b"], False, "skymigrate-teams")
    env = env_of(c)
    assert env["SKYMIGRATE_STATE_URL"] == "s3://skymigrate-state/prod"
    assert env["SKYMIGRATE_STATE_ENDPOINT"] == "https://storage.example.net"
    assert env["SKYMIGRATE_STATE_REGION"] == "eu-north1"
    assert env["SKYMIGRATE_STATE_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "state-keys", "key": "ak"}}
    assert env["SKYMIGRATE_STATE_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "state-keys", "key": "sk"}}
    assert env["SKYPILOT_API_SERVER_ENDPOINT"] == "http://skypilot-api.skypilot.svc:46580"
    assert env["SKYMIGRATE_DEFAULT_LAUNCHER"] == "skypilot" and env["SKYMIGRATE_LOG_LEVEL"] == "debug"
    assert env["SKYMIGRATE_EXTRA"] == "1"
    assert c["resources"] == NON_DEFAULT["resources"]
    work = next(v for v in pod["volumes"] if v["name"] == "work")
    assert work["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}

    # Namespaced RBAC: Migrations, events and Secrets only in the served namespaces.
    cr = idx[("ClusterRole", "", "sm-teams")]
    assert {r for rule in rules(cr) for r in rule["resources"]} == {"customresourcedefinitions", "namespaces"}
    assert verbs_for(cr, "", "namespaces") == {"get", "list", "watch"}
    for ns in ("team-a", "team-b"):
        role = idx[("Role", ns, "sm-teams")]
        assert verbs_for(role, "", "secrets") == {"get"}
        assert verbs_for(role, "skymigrate.io", "migrations/status") == {"get", "patch"}
        assert verbs_for(role, "kopf.dev", "kopfpeerings") == {"get", "list", "watch", "patch"}
        rb = idx[("RoleBinding", ns, "sm-teams")]
        assert rb["roleRef"]["name"] == "sm-teams"
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "sm-teams", "namespace": NS}]
    assert not [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] not in ("team-a", "team-b")]

    # Prometheus Operator objects select the metrics Service / the operator pod.
    svc = idx[("Service", NS, "sm-teams-metrics")]
    sm = idx[("ServiceMonitor", NS, "sm-teams")]
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    assert sm["spec"]["endpoints"][0]["interval"] == "15s"
    pm = idx[("PodMonitor", NS, "sm-teams")]
    assert pm["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"

    cm = idx[("ConfigMap", "monitoring", "sm-teams-dashboard")]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Storage"}
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_optional_parts_can_be_switched_off(tmp_path: Path) -> None:
    docs = render(
        {"dashboard": {"enabled": False}, "rbac": {"create": False},
         "serviceAccount": {"create": False, "name": "existing-sa"}},
        tmp_path,
    )  # fmt: skip
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Service"]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa"


# (id, --set arguments, substrings of helm's error)
INVALID: list[tuple[str, list[str], list[str]]] = [
    ("log-level", ["logLevel=loud"], ["/logLevel", "value must be one of 'debug', 'info', 'warning', 'error'"]),
    ("launcher", ["defaultLauncher=ec2"], ["/defaultLauncher", "value must be one of 'local', 'skypilot'"]),
    ("state-url", ["stateStore.url=ftp://host/x"], ["/stateStore/url", "'ftp://host/x' does not match pattern"]),
    ("state-endpoint", ["stateStore.endpoint=storage.example.net"], ["/stateStore/endpoint", "does not match"]),
    ("sky-endpoint", ["skypilot.apiServerEndpoint=localhost:46580"], ["/skypilot/apiServerEndpoint"]),
    ("namespace-name", ["watchNamespaces={Team_A}"], ["/watchNamespaces/0", "'Team_A' does not match pattern"]),
    ("replicas-without-peering", ["replicaCount=3"], ["/peering/enabled", "value must be true"]),
    ("metrics-port", ["metrics.port=70000"], ["/metrics/port", "maximum"]),
    ("pull-policy", ["image.pullPolicy=Sometimes"], ["/image/pullPolicy", "value must be one of"]),
    ("empty-repository", ["image.repository="], ["/image/repository"]),
    ("interval", ["serviceMonitor.interval=often"], ["/serviceMonitor/interval", "does not match pattern"]),
    ("unknown-key", ["imageTag=1.0"], ["additional properties 'imageTag' not allowed"]),
    ("typo-in-section", ["stateStore.uri=s3://b/p"], ["/stateStore", "additional properties 'uri' not allowed"]),
    ("wrong-type", ["--set-string", "replicaCount=two"], ["/replicaCount", "got string, want integer"]),
    ("work-medium", ["workDir.medium=Disk"], ["/workDir/medium", "value must be one of"]),
]


@pytest.mark.parametrize(("sets", "messages"), [pytest.param(s, m, id=i) for i, s, m in INVALID])
def test_invalid_values_are_rejected_by_the_schema(sets: list[str], messages: list[str]) -> None:
    args = sets if sets[0].startswith("--") else [a for s in sets for a in ("--set", s)]
    r = helm("template", "skymigrate", str(CHART), *args, check=False)
    assert r.returncode != 0, f"helm accepted {sets}"
    assert "values don't meet the specifications of the schema" in r.stderr
    for m in messages:
        assert m in r.stderr, f"{m!r} not in:\n{r.stderr}"


# --------------------------------------------------------------------------- against a real API server
def prometheus_operator_crds() -> list[Path]:
    """ServiceMonitor and PodMonitor CRDs from the Prometheus Operator's own Go module (module cache)."""
    import shutil

    go = shutil.which("go") or "/usr/local/go/bin/go"
    mod = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
    r = subprocess.run([go, "mod", "download", "-json", mod], capture_output=True, text=True, timeout=300,
                       check=False, cwd="/")  # fmt: skip
    assert r.returncode == 0, f"go mod download {mod}: {r.stdout}{r.stderr}"
    d = Path(json.loads(r.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    return [d / f"monitoring.coreos.com_{n}.yaml" for n in ("servicemonitors", "podmonitors")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with running_apiserver(tmp_path_factory.mktemp("kube")) as c:
        for ns in (NS, "team-a", "team-b", "monitoring", "demo"):
            kubectl(c, "create", "namespace", ns)
        for crd in prometheus_operator_crds():
            kubectl(c, "apply", "--server-side", "-f", str(crd))
        kubectl(c, "wait", "--for=condition=Established", "--timeout=60s",
                "crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com")  # fmt: skip
        yield c


def install_chart_crd(c: KubeCluster) -> None:
    kubectl(c, "apply", "--server-side", "-f", str(CHART / "crds" / "migration.yaml"))
    kubectl(c, "wait", "--for=condition=Established", "--timeout=60s", "crd/migrations.skymigrate.io")


def server_dry_run(c: KubeCluster, docs: list[Doc]) -> list[str]:
    r = kubectl(c, "apply", "--server-side", "--dry-run=server", "-o", "name", "-f", "-",
                stdin="\n---\n".join(yaml.safe_dump(d) for d in docs), check=False)  # fmt: skip
    assert r.returncode == 0, f"API server rejected:\n{r.stderr}"
    return r.stdout.split()


@pytest.mark.kube
@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_objects_are_accepted_by_the_api_server(name: str, cluster: KubeCluster, tmp_path: Path) -> None:
    install_chart_crd(cluster)
    docs = render(VALUE_SETS[name], tmp_path)
    accepted = server_dry_run(cluster, docs)
    assert len(accepted) == len(docs), accepted
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ClusterRole", "ConfigMap"} <= kinds


@pytest.mark.kube
def test_quickstart_manifests_are_accepted(cluster: KubeCluster) -> None:
    install_chart_crd(cluster)
    docs = quickstart_docs()
    assert any(d["kind"] == "Migration" for d in docs)
    ns = [d for d in docs if d["kind"] == "Namespace"]
    if ns:
        kubectl(cluster, "apply", "--server-side", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(d) for d in ns))
    accepted = server_dry_run(cluster, [d for d in docs if d["kind"] != "Namespace"])
    assert len(accepted) == len(docs) - len(ns)


def can_i(c: KubeCluster, sa: str, verb: str, resource: str, namespace: str = "") -> bool:
    """Ask the API server's authorizer (a SubjectAccessReview) whether the chart's ServiceAccount may.

    resource is "resource[/subresource][.group]"; namespace "" means cluster-wide.
    """
    name, _, group = resource.partition(".")
    res, _, sub = name.partition("/")
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{NS}:{sa}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": res, "subresource": sub,
                                   "namespace": namespace},
        },
    }  # fmt: skip
    r = kubectl(c, "create", "-o", "json", "-f", "-", stdin=json.dumps(review))
    return bool(json.loads(r.stdout)["status"].get("allowed"))


@pytest.mark.kube
def test_helm_install_and_least_privilege(cluster: KubeCluster, tmp_path: Path) -> None:
    """A real `helm install` (helm creates the CRD from crds/), then what the operator may and may not do."""
    kc = ["--kubeconfig", str(cluster.kubeconfig)]
    helm("install", "skymigrate", str(CHART), "--namespace", NS, *kc)
    helm("install", "teams", str(CHART), "--namespace", NS, *kc, *values_args(NON_DEFAULT, tmp_path))
    listed = helm("list", "--namespace", NS, "-o", "json", *kc).stdout
    assert {(r["name"], r["status"]) for r in json.loads(listed)} == {("skymigrate", "deployed"), ("teams", "deployed")}
    crd = json.loads(kubectl(cluster, "get", "crd", "migrations.skymigrate.io", "-o", "json").stdout)
    assert crd["spec"]["group"] == "skymigrate.io"

    mig, sa = "migrations.skymigrate.io", "skymigrate"
    # Serving every namespace.
    assert can_i(cluster, sa, "watch", mig)
    assert can_i(cluster, sa, "patch", "migrations/status.skymigrate.io", "anywhere")
    assert can_i(cluster, sa, "update", "migrations/finalizers.skymigrate.io", "anywhere")
    assert can_i(cluster, sa, "patch", mig, "team-a")
    assert can_i(cluster, sa, "get", "secrets", "team-a")
    assert can_i(cluster, sa, "create", "events", "team-b")
    assert can_i(cluster, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(cluster, sa, "list", "secrets", "team-a")
    assert not can_i(cluster, sa, "create", "secrets", "team-a")
    assert not can_i(cluster, sa, "delete", mig, "team-a")
    assert not can_i(cluster, sa, "create", mig, "team-a")
    assert not can_i(cluster, sa, "update", mig, "team-a")
    assert not can_i(cluster, sa, "create", "pods", NS)
    assert not can_i(cluster, sa, "update", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(cluster, sa, "patch", "clusterkopfpeerings.kopf.dev")  # no peering by default
    assert not can_i(cluster, sa, "create", "leases.coordination.k8s.io", NS)

    # Serving team-a and team-b only, with kopf peering.
    sa = "sm-teams"
    for ns in ("team-a", "team-b"):
        assert can_i(cluster, sa, "watch", mig, ns)
        assert can_i(cluster, sa, "patch", "migrations/status.skymigrate.io", ns)
        assert can_i(cluster, sa, "get", "secrets", ns)
        assert can_i(cluster, sa, "patch", "kopfpeerings.kopf.dev", ns)
    for ns in ("default", NS, "monitoring"):
        assert not can_i(cluster, sa, "list", mig, ns)
        assert not can_i(cluster, sa, "get", "secrets", ns)
        assert not can_i(cluster, sa, "patch", "kopfpeerings.kopf.dev", ns)
    assert not can_i(cluster, sa, "list", mig)
    assert can_i(cluster, sa, "list", "namespaces")
    assert not can_i(cluster, sa, "delete", "namespaces")
