"""The Migration CRD: generated from the spec model, committed, and enforced by a real kube-apiserver.

Every invalid manifest below is run through both halves of the API: the pydantic model (what
`skymigrate run` and the operator use) and the API server (what `kubectl apply` hits). Both must
reject it with a message a user can act on.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from skymigrate.core import crd as crdgen
from skymigrate.core import spec as specmod
from skymigrate.core.spec import Location, MigrationSpec, load_manifest

from tests.support.kube import KubeCluster, running_apiserver
from tests.support.tools import tool_path

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "migration.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
Doc = dict[str, Any]


def migration(name: str, spec: Doc) -> Doc:
    return {"apiVersion": crdgen.API_VERSION, "kind": "Migration", "metadata": {"name": name}, "spec": spec}


BASE: Doc = {
    "source": {"endpoint": "http://127.0.0.1:9000", "bucket": "src-bucket"},
    "target": {"endpoint": "http://127.0.0.1:9001", "bucket": "dst-bucket"},
}


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def apply(spec: Doc) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    return apply


def _same_place(spec: Doc) -> None:
    spec["target"] = copy.deepcopy(spec["source"])


def _same_bucket_on_aws(spec: Doc) -> None:
    del spec["source"]["endpoint"], spec["target"]["endpoint"]
    spec["target"]["bucket"] = spec["source"]["bucket"]


def _drop(path: str) -> Callable[[Doc], None]:
    def apply(spec: Doc) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node[p]
        del node[leaf]

    return apply


# (id, change to BASE, what the API server says (all substrings), what pydantic says)
INVALID: list[tuple[str, Callable[[Doc], None], list[str], str]] = [
    ("same-source-and-target", _same_place, ["spec: Invalid value", specmod.MSG_DISTINCT], specmod.MSG_DISTINCT),
    ("same-bucket-default-endpoint", _same_bucket_on_aws, [specmod.MSG_DISTINCT], specmod.MSG_DISTINCT),
    (
        "bad-bucket-name",
        _set("source.bucket", "My_Bucket"),
        ['spec.source.bucket: Invalid value: "My_Bucket"', "should match"],
        "breaks S3 naming rules",
    ),
    ("bucket-double-dot", _set("target.bucket", "dst..bucket"), [specmod.MSG_BUCKET_DOTS], specmod.MSG_BUCKET_DOTS),
    (
        "non-url-endpoint",
        _set("source.endpoint", "storage.example.com"),
        ['spec.source.endpoint: Invalid value: "storage.example.com"', "should match"],
        "must be an http:// or https:// URL",
    ),
    (
        "nodes-zero",
        _set("nodes", 0),
        ["spec.nodes", "should be greater than or equal to 1"],
        "greater than or equal to 1",
    ),
    (
        "concurrency-zero",
        _set("concurrency", 0),
        ["spec.concurrency", "should be greater than or equal to 1"],
        "greater than or equal to 1",
    ),
    (
        "two-credential-methods",
        _set("source.credentials", {"profile": "us-central1", "anonymous": True}),
        ["spec.source.credentials", specmod.MSG_ONE_CREDENTIAL],
        specmod.MSG_ONE_CREDENTIAL,
    ),
    (
        "no-credential-method",
        _set("target.credentials", {"anonymous": False}),
        ["spec.target.credentials", specmod.MSG_ONE_CREDENTIAL],
        specmod.MSG_ONE_CREDENTIAL,
    ),
    (
        "skypilot-with-file-state-store",
        lambda s: s.update(launcher={"type": "skypilot"}, stateStore={"url": "file:///var/lib/skymigrate"}),
        [specmod.MSG_SKYPILOT_STATE],
        specmod.MSG_SKYPILOT_STATE,
    ),
    (
        "skypilot-with-default-state-store",
        _set("launcher", {"type": "skypilot"}),
        [specmod.MSG_SKYPILOT_STATE],
        specmod.MSG_SKYPILOT_STATE,
    ),
    ("missing-target", _drop("target"), ["spec.target: Required value"], "Field required"),
    ("missing-bucket", _drop("source.bucket"), ["spec.source.bucket: Required value"], "Field required"),
    ("size-range", _set("filters", {"minSize": 10, "maxSize": 5}), [specmod.MSG_SIZE_RANGE], specmod.MSG_SIZE_RANGE),
    (
        "backoff-range",
        _set("retry", {"initialBackoffSeconds": 60}),
        [specmod.MSG_BACKOFF_RANGE],
        specmod.MSG_BACKOFF_RANGE,
    ),
    ("ram-disk-size", _set("ramDisk.size", "lots"), ["spec.ramDisk.size", "should match"], "is not a quantity"),
    (
        "unknown-launcher",
        _set("launcher.type", "ssh"),
        ['spec.launcher.type: Unsupported value: "ssh"', '"local", "skypilot"'],
        "'local' or 'skypilot'",
    ),
    ("unknown-field", _set("nodez", 3), ['unknown field "spec.nodez"'], "Extra inputs are not permitted"),
]


def invalid_spec(change: Callable[[Doc], None]) -> Doc:
    spec = copy.deepcopy(BASE)
    change(spec)
    return spec


def schema_properties(node: Doc, path: str = "") -> Iterator[tuple[str, Doc]]:
    for name, sub in node.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from schema_properties(sub, f"{path}.{name}")
    if "items" in node:
        yield from schema_properties(node["items"], f"{path}[]")


def words(text: str) -> str:
    return " ".join(text.split())


def migration_doc(path: Path) -> Doc:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Migration"]
    assert len(docs) == 1, f"{path.name}: expected one Migration"
    doc: Doc = docs[0]
    return doc


# --------------------------------------------------------------------------- unit: generator and model
def test_committed_crd_is_the_generators_output() -> None:
    assert CRD_FILE.read_text() == crdgen.render(), "regenerate: python -m skymigrate.core.crd > crds/migration.yaml"


def test_every_property_has_a_description() -> None:
    root = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    props = [(p, s) for p, s in schema_properties(root) if p != ".metadata"]
    assert len(props) > 60  # the walk really reaches the nested fields
    missing = [p for p, s in props if not s.get("description", "").strip()]
    assert missing == []


def test_schema_is_structural_openapi() -> None:
    """No JSON-schema-only constructs survive: the API server would reject or mis-read them."""
    text = json.dumps(crdgen.crd())
    for keyword in ('"$ref"', '"anyOf"', '"$defs"', '"title"', '"additionalProperties"', '"const"'):
        assert keyword not in text
    for path, s in schema_properties(crdgen.spec_schema(), ".spec"):
        assert "type" in s, path
        if "exclusiveMinimum" in s:
            assert s["exclusiveMinimum"] is True and "minimum" in s, path


def test_generator_refuses_an_undocumented_field() -> None:
    class Undocumented(pydantic.BaseModel):
        documented: int = pydantic.Field(default=1, description="has one")
        bare: int = 2

    with pytest.raises(crdgen.SchemaError, match=r"spec\.bare has no description"):
        crdgen.structural_schema(Undocumented)


def test_schema_defaults_and_bounds_come_from_the_model() -> None:
    spec = crdgen.spec_schema()["properties"]
    assert spec["nodes"]["default"] == 1 and spec["nodes"]["minimum"] == 1
    assert spec["concurrency"]["default"] == 4 and spec["concurrency"]["minimum"] == 1
    assert spec["debug"]["default"] is False
    assert spec["retry"]["properties"]["attempts"]["default"] == 5
    assert spec["progress"]["properties"]["nodeIntervalSeconds"]["default"] == 15
    assert spec["progress"]["properties"]["clusterIntervalSeconds"]["default"] == 60
    assert spec["ramDisk"]["properties"]["size"]["default"] == "16Gi"
    # A default_factory becomes the smallest manifest fragment that reproduces it.
    assert spec["retry"]["default"] == {}
    assert spec["source"]["properties"]["credentials"]["default"] == {"anonymous": True}
    assert spec["source"]["required"] == ["bucket"]
    assert spec["source"]["properties"]["endpoint"]["nullable"] is True
    assert Location.model_fields["bucket"].description == spec["source"]["properties"]["bucket"]["description"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_with_the_model(path: Path) -> None:
    meta, spec = load_manifest(migration_doc(path))
    assert meta["name"]
    assert not spec.source.same_place(spec.target)


def test_examples_cover_the_documented_uses() -> None:
    by_name = {p.name: load_manifest(migration_doc(p))[1] for p in EXAMPLES}
    two = by_name["two-endpoints-secrets.yaml"]
    assert two.source.endpoint != two.target.endpoint
    assert two.source.credentials.secret_ref and two.target.credentials.secret_ref
    secrets = [d for d in yaml.safe_load_all((REPO / "examples/two-endpoints-secrets.yaml").read_text()) if d]
    secret_names = {d["metadata"]["name"] for d in secrets if d["kind"] == "Secret"}
    assert {two.source.credentials.secret_ref.name, two.target.credentials.secret_ref.name} == secret_names
    neb = by_name["nebius-to-nebius.yaml"]
    assert (neb.source.credentials.profile, neb.target.credentials.profile) == ("us-central1", "eu-north1")
    assert neb.source.endpoint == "https://storage.us-central1.nebius.cloud:443"
    assert neb.target.endpoint == "https://storage.eu-north1.nebius.cloud:443"
    assert neb.launcher.type == "skypilot" and neb.state_store.url.startswith("s3://")
    pre = by_name["prefix-filtered.yaml"]
    assert pre.source.prefix and pre.filters.include and pre.filters.exclude


def test_base_manifest_is_valid() -> None:
    MigrationSpec.model_validate(BASE)


@pytest.mark.parametrize(("change", "python_says"), [(c, p) for _, c, _, p in INVALID], ids=[i[0] for i in INVALID])
def test_model_rejects_invalid_spec(change: Callable[[Doc], None], python_says: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        MigrationSpec.model_validate(invalid_spec(change))
    assert python_says in str(err.value)


# --------------------------------------------------------------------------- against kube-apiserver
class Kubectl:
    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster
        self.bin = str(tool_path("kubectl"))

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Own discovery cache: never ~/.kube, and never stale across test API servers.
        cmd = [self.bin, f"--cache-dir={self.cluster.workdir / 'kubectl-cache'}", *args]
        proc = subprocess.run(cmd, env=self.cluster.env(), input=stdin, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def get(self, name: str) -> Doc:
        obj: Doc = json.loads(self.run("get", "migration", name, "-o", "json").stdout)
        return obj


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    """One API server for the module, with the committed CRD installed and Established."""
    with running_apiserver(tmp_path_factory.mktemp("kube")) as cluster:
        k = Kubectl(cluster)
        k.run("apply", "-f", str(CRD_FILE))
        k.run("wait", "--for=condition=Established", f"crd/{crdgen.CRD_NAME}", "--timeout=60s")
        yield k


@pytest.mark.kube
def test_crd_installs_and_is_established(kubectl: Kubectl) -> None:
    crd = json.loads(kubectl.run("get", "crd", crdgen.CRD_NAME, "-o", "json").stdout)
    conditions = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    assert "NonStructuralSchema" not in conditions
    assert crd["status"]["acceptedNames"]["shortNames"] == ["mig"]
    assert crd["spec"]["scope"] == "Namespaced"


@pytest.mark.kube
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_applies(kubectl: Kubectl, path: Path) -> None:
    out = kubectl.run("apply", "-f", str(path)).stdout
    name = migration_doc(path)["metadata"]["name"]
    assert f"migration.skymigrate.io/{name} created" in out
    stored = kubectl.get(name)["spec"]
    # What the server stored (its defaults applied) is what the model makes of the example, but for the
    # fields the example leaves to the operator's installation-wide defaults.
    written = migration_doc(path)["spec"]
    wire = load_manifest(migration_doc(path))[1].wire()
    assert stored == {k: v for k, v in wire.items() if k in written or k not in crdgen.OPERATOR_DEFAULTED}


@pytest.mark.kube
def test_kubectl_explain_shows_the_model_descriptions(kubectl: Kubectl) -> None:
    # The OpenAPI document is published shortly after the CRD is Established: wait for it.
    deadline = time.monotonic() + 30
    proc = kubectl.run("explain", "migration.spec.source", check=False)
    while proc.returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        proc = kubectl.run("explain", "migration.spec.source", check=False)
    assert proc.returncode == 0, proc.stderr
    text = words(proc.stdout)
    assert words(MigrationSpec.model_fields["source"].description or "") in text
    for name, field in Location.model_fields.items():
        assert field.description
        assert words(field.description) in text, name
    assert "bucket <string> -required-" in text
    creds = words(kubectl.run("explain", "migration.spec.source.credentials.secretRef").stdout)
    assert "Name of the Secret." in creds


@pytest.mark.kube
@pytest.mark.parametrize(("change", "server_says"), [(c, s) for _, c, s, _ in INVALID], ids=[i[0] for i in INVALID])
def test_api_server_rejects_invalid_spec(
    kubectl: Kubectl, change: Callable[[Doc], None], server_says: list[str]
) -> None:
    doc = migration("invalid", invalid_spec(change))
    proc = kubectl.run("create", "-f", "-", stdin=json.dumps(doc), check=False)
    assert proc.returncode != 0, "the API server accepted an invalid Migration"
    for text in server_says:
        assert text in proc.stderr


@pytest.mark.kube
def test_api_server_applies_the_models_defaults(kubectl: Kubectl) -> None:
    minimal: Doc = {"source": {"bucket": "src-bucket"}, "target": {"bucket": "dst-bucket"}}
    kubectl.run("create", "-f", "-", stdin=json.dumps(migration("minimal", minimal)))
    spec = kubectl.get("minimal")["spec"]
    assert spec["nodes"] == 1
    assert spec["concurrency"] == 4
    assert spec["debug"] is False
    assert spec["retry"]["attempts"] == 5
    assert spec["progress"] == {"nodeIntervalSeconds": 15, "clusterIntervalSeconds": 60}
    assert spec["ramDisk"] == {"size": "16Gi"}
    assert spec["source"]["credentials"] == {"anonymous": True}
    # Every other default, too: the server-side object is the model's, except the fields the operator
    # fills from its own installation-wide defaults.
    assert "launcher" not in spec and "stateStore" not in spec
    wire = MigrationSpec.model_validate(minimal).wire()
    assert spec == {k: v for k, v in wire.items() if k not in crdgen.OPERATOR_DEFAULTED}


@pytest.mark.kube
def test_explicit_null_means_unset_on_both_sides(kubectl: Kubectl) -> None:
    spec = copy.deepcopy(BASE)
    spec["source"]["credentials"] = {"profile": None, "secretRef": None, "anonymous": True}
    spec["filters"] = {"minSize": None, "maxSize": 5}
    MigrationSpec.model_validate(spec)
    kubectl.run("create", "-f", "-", stdin=json.dumps(migration("nulls", spec)))


@pytest.mark.kube
def test_printer_columns_read_the_status(kubectl: Kubectl) -> None:
    kubectl.run("create", "-f", "-", stdin=json.dumps(migration("columns", {**BASE, "nodes": 3})))
    status = {
        "phase": "Running",
        "progressText": "42.0%",
        "objectsText": "150/500",
        "speedText": "1.2 GB/s",
        "eta": {"seconds": 8130, "text": "2h 15m 30s", "completionTime": "2030-01-01T12:00:00Z"},
        "nodes": [{"rank": 0, "phase": "Running"}],  # not declared: kept as written
    }
    kubectl.run(
        "patch", "migration", "columns", "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )
    assert kubectl.get("columns")["status"] == status

    def row(*extra: str) -> dict[str, str]:
        lines = kubectl.run("get", "mig", "columns", *extra).stdout.splitlines()
        cells = [re.split(r"\s{2,}", line.strip()) for line in lines]
        return dict(zip(cells[0], cells[1], strict=True))

    short = row()
    assert list(short) == ["NAME", "PHASE", "PROGRESS", "OBJECTS", "SPEED", "ETA", "AGE"]
    assert (short["PHASE"], short["PROGRESS"], short["OBJECTS"], short["SPEED"], short["ETA"]) == (
        "Running",
        "42.0%",
        "150/500",
        "1.2 GB/s",
        "2h 15m 30s",
    )
    wide = row("-o", "wide")
    assert (wide["NODES"], wide["COMPLETION"]) == ("3", "2030-01-01T12:00:00Z")
