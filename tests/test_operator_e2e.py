"""The operator end to end: real kube-apiserver + etcd, the real CRD, the real operator process, real S3
servers and real agents. Every copy is checked byte for byte."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import new_bucket
from tests.support.data import digests, expected, payload, put_all
from tests.support.kube import KubeCluster, running_apiserver
from tests.support.motoserver import S3Server
from tests.support.operatorkit import (
    OperatorProcess,
    events_for,
    get_migration,
    install_crd,
    kubectl,
    wait_for,
)
from tests.support.throttle import throttled

pytestmark = [pytest.mark.kube, pytest.mark.slow]
NS = "skymig-e2e"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with running_apiserver(tmp_path_factory.mktemp("kube")) as c:
        install_crd(c)
        kubectl(c, "create", "namespace", NS)
        yield c


@pytest.fixture(scope="module")
def operator(cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster, NS, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


def secret(cluster: KubeCluster, name: str, ak: str, sk: str) -> None:
    doc = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
        "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(ak.encode()).decode(),
                 "AWS_SECRET_ACCESS_KEY": base64.b64encode(sk.encode()).decode()},
    }  # fmt: skip
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(doc))


def migration(
    name: str, src: S3Server, sb: str, dst: S3Server, db: str, state: Path, src_endpoint: str | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "skymigrate.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "source": {
                "endpoint": src_endpoint or src.endpoint_url,
                "bucket": sb,
                "credentials": {"secretRef": {"name": f"{name}-src"}},
            },
            "target": {
                "endpoint": dst.endpoint_url,
                "bucket": db,
                "credentials": {"secretRef": {"name": f"{name}-dst"}},
            },
            "stateStore": {"url": f"file://{state}"},
            "progress": {"nodeIntervalSeconds": 1, "clusterIntervalSeconds": 1},
            "ramDisk": {"size": "1Gi"},
            **spec,
        },
    }


def apply(cluster: KubeCluster, doc: dict[str, Any]) -> None:
    kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(doc))


def start(
    cluster: KubeCluster, name: str, src: S3Server, dst: S3Server, objects: dict[str, bytes], state: Path, **spec: Any
) -> tuple[str, str]:
    """Fresh buckets, the source filled, the credentials Secrets, and the Migration applied (``src_endpoint``
    in ``spec``: reach the source through it, e.g. a throttled link)."""
    sb, db = new_bucket(src, "src"), new_bucket(dst, "dst")
    put_all(src.client(), sb, objects)
    secret(cluster, f"{name}-src", src.access_key, src.secret_key)
    secret(cluster, f"{name}-dst", dst.access_key, dst.secret_key)
    apply(cluster, migration(name, src, sb, dst, db, state, **spec))
    return sb, db


class StatusRecorder:
    """Samples .status while a migration runs, to check what users would have seen."""

    def __init__(self, cluster: KubeCluster, name: str) -> None:
        self.cluster, self.name = cluster, name
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _sample(self) -> bool:
        """One read of .status; False when kubectl failed (a loaded machine can refuse a call)."""
        try:
            m = get_migration(self.cluster, NS, self.name)
        except ValueError:  # truncated JSON from a killed kubectl
            return False
        if m is None:
            return False
        if m.get("status"):
            self.samples.append(m["status"])
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()
        # The thread may have last sampled just before the terminal patch: take the state as it is now,
        # and insist on getting it (a failed read here once left 'Verifying' as the last phase seen).
        for _ in range(10):
            if self._sample():
                return
            time.sleep(0.5)
        raise AssertionError(f"could not read migration {self.name} after it finished")

    def phases(self) -> list[str]:
        out: list[str] = []
        for s in self.samples:
            if not out or out[-1] != s.get("phase"):
                out.append(s.get("phase", ""))
        return out


def source_objects(n: int = 80) -> dict[str, bytes]:
    objects = {f"set/o-{i:03d}.bin": payload(f"e{i}", 64 * 1024 + i * 9001) for i in range(n)}
    objects["big/archive.zip"] = payload("big", 12 * 2**20)
    return objects


def terminal(cluster: KubeCluster, name: str) -> Any:
    def check() -> Any:
        m = get_migration(cluster, NS, name)
        return m if m and m.get("status", {}).get("phase") in ("Succeeded", "Failed", "Cancelled") else None

    return check


def test_migration_runs_to_succeeded_with_live_status(
    cluster: KubeCluster, operator: OperatorProcess, src_server: S3Server, dst_server: S3Server, tmp_path: Path
) -> None:
    rec = StatusRecorder(cluster, "happy")
    objects = source_objects()
    port = urllib.parse.urlsplit(src_server.endpoint_url).port
    assert port
    # A slow link gives the run a duration this machine's speed cannot shrink below the ETA's warm-up
    # (~46 MB at 4 MB/s: ~12 s of copying), so a Running status with an ETA is there to be seen.
    with throttled(port, 4e6) as link_port:
        _, db = start(cluster, "happy", src_server, dst_server, objects, tmp_path / "state", nodes=2,
                      concurrency=2, transfer={"smallObjectThreshold": 4 * 2**20},
                      src_endpoint=f"http://127.0.0.1:{link_port}")  # fmt: skip
        try:
            done = wait_for("happy to finish", terminal(cluster, "happy"), 240, operator.log)
            running = [s for s in rec.samples if s.get("phase") == "Running"]
            # What kubectl showed while it ran.
            wide = kubectl(cluster, "get", "migrations", "-n", NS, "-o", "wide").stdout
        finally:
            rec.stop()
    st = done["status"]
    assert st["phase"] == "Succeeded", (st, operator.log()[-4000:])
    assert digests(dst_server.client(), db) == expected(objects)
    # The phases users saw, in order (fast phases may fall between samples, never out of order).
    order = ["Pending", "Planning", "Launching", "Running", "Verifying", "Succeeded"]
    seen = [p for p in rec.phases() if p]
    assert seen == sorted(seen, key=order.index) and seen[-1] == "Succeeded"
    assert running, f"never saw Running: {rec.phases()}"
    with_eta = [s for s in running if s.get("eta", {}).get("seconds") is not None and s.get("nodes")]
    assert with_eta, "no Running status carried an ETA and per-node entries"
    s = with_eta[-1]
    assert len(s["nodes"]) == 2 and {n["rank"] for n in s["nodes"]} == {0, 1}
    assert all("percent" in n and "lastHeartbeat" in n for n in s["nodes"])
    assert s["objects"]["total"] == len(objects) and s["bytes"]["total"] == sum(map(len, objects.values()))
    # Final status: totals, conditions, report pointer.
    assert st["objects"]["done"] == len(objects) and st["progressText"] == "100.0%"
    assert st["objectsText"] == f"{len(objects)}/{len(objects)}"
    assert st["observedGeneration"] == done["metadata"]["generation"]
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Succeeded"
    assert st["report"]["failedObjects"] == 0 and st["report"]["missingInTarget"] == 0
    report = json.loads(Path(st["report"]["url"].removeprefix("file://")).read_text())
    assert report["source"]["objects"] == report["target"]["objects"] == len(objects)
    # kubectl get: printer columns with real values.
    out = kubectl(cluster, "get", "migrations", "-n", NS).stdout
    header, row = out.splitlines()[0].split(), next(line for line in out.splitlines() if line.startswith("happy"))
    assert header[:6] == ["NAME", "PHASE", "PROGRESS", "OBJECTS", "SPEED", "ETA"]
    assert row.split()[1:4] == ["Succeeded", "100.0%", f"{len(objects)}/{len(objects)}"]
    assert "NODES" in wide.splitlines()[0] and "COMPLETION" in wide.splitlines()[0]
    reasons = [e["reason"] for e in events_for(cluster, NS, "happy")]
    assert {"Planned", "Launched", "Succeeded"} <= set(reasons)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong-secret", "CredentialsRejected"),
        ("missing-bucket", "BucketNotFound"),
        ("unreachable", "EndpointUnreachable"),
        ("no-secret", "CredentialsNotFound"),
    ],
)
def test_bad_input_fails_with_condition_and_event(
    case: str, reason: str, cluster: KubeCluster, operator: OperatorProcess, src_server: S3Server,
    dst_server: S3Server, tmp_path: Path,
) -> None:  # fmt: skip
    name = f"bad-{case}"
    sb, db = new_bucket(src_server, "src"), new_bucket(dst_server, "dst")
    wrong = "definitely-not-the-secret-" + case
    src_endpoint = src_server
    if case != "no-secret":
        secret(
            cluster, f"{name}-src", src_server.access_key, wrong if case == "wrong-secret" else src_server.secret_key
        )
        secret(cluster, f"{name}-dst", dst_server.access_key, dst_server.secret_key)
    if case == "missing-bucket":
        sb = "no-such-bucket-anywhere"
    if case == "unreachable":
        from tests.support.procs import free_port

        src_endpoint = S3Server(f"http://127.0.0.1:{free_port()}", src_server.access_key, src_server.secret_key)
    apply(cluster, migration(name, src_endpoint, sb, dst_server, db, tmp_path / "state"))
    m = wait_for(f"{name} to fail", terminal(cluster, name), 120, operator.log)
    st = m["status"]
    assert st["phase"] == "Failed", st
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == reason and failed["status"] == "True", failed
    assert failed["message"]
    evs = events_for(cluster, NS, name)
    assert any(e["reason"] == reason and e["type"] == "Warning" for e in evs), evs
    # Secrets appear nowhere users or logs can see.
    for text in (json.dumps(m), json.dumps(evs), operator.log()):
        assert wrong not in text
        assert src_server.secret_key not in text and dst_server.secret_key not in text
    # No crash loop: it stays Failed.
    time.sleep(2)
    assert get_migration(cluster, NS, name)["status"]["phase"] == "Failed"  # type: ignore[index]


def _agent_pids(run_dir: Path, uid: str) -> list[int]:
    return [int(p.read_text()) for d in run_dir.glob(f"{uid}-*") for p in d.glob("*.pid")]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


def _journal_keys(state_root: Path) -> list[str]:
    import gzip

    keys: list[str] = []
    for seg in sorted(state_root.glob("journal/*/*.jsonl.gz")):
        keys += [json.loads(line)["k"] for line in gzip.decompress(seg.read_bytes()).decode().splitlines() if line]
    return keys


def test_operator_killed_mid_run_resumes_without_recopying(
    cluster: KubeCluster, operator: OperatorProcess, src_server: S3Server, dst_server: S3Server, tmp_path: Path
) -> None:
    objects = {f"r/{i:03d}": payload(f"r{i}", 256 * 1024 + i) for i in range(160)}
    _, db = start(cluster, "restart", src_server, dst_server, objects, tmp_path / "state", nodes=2, concurrency=1,
                  transfer={"batchMaxObjects": 8})  # fmt: skip
    wait_for("Running with progress", lambda: (get_migration(cluster, NS, "restart") or {}).get("status", {})
             .get("objects", {}).get("done", 0) > 0, 120, operator.log)  # fmt: skip
    operator.kill()
    time.sleep(2)
    operator.start()
    m = wait_for("restart to finish", terminal(cluster, "restart"), 240, operator.log)
    assert m["status"]["phase"] == "Succeeded", m["status"]
    assert digests(dst_server.client(), db) == expected(objects)
    root = Path(m["status"]["stateStore"].removeprefix("file://"))
    keys = _journal_keys(root)
    assert sorted(keys) == sorted(objects), "every object journaled exactly once: nothing verified was copied twice"


def test_delete_mid_run_stops_agents_and_releases_finalizer(
    cluster: KubeCluster, operator: OperatorProcess, src_server: S3Server, dst_server: S3Server, tmp_path: Path
) -> None:
    objects = {f"d/{i:03d}": payload(f"d{i}", 512 * 1024) for i in range(120)}
    start(cluster, "gone", src_server, dst_server, objects, tmp_path / "state", nodes=2, concurrency=1,
          transfer={"batchMaxObjects": 4}, deleteStateOnDelete=True)  # fmt: skip
    m = wait_for("gone Running", lambda: (lambda m: m if m and m.get("status", {}).get("phase") == "Running" else None)(
        get_migration(cluster, NS, "gone")), 120, operator.log)  # fmt: skip
    assert "skymigrate.io/finalizer" in m["metadata"]["finalizers"]
    uid = m["metadata"]["uid"]
    run_dir = operator.workdir / "run"
    pids = wait_for("agent pids", lambda: _agent_pids(run_dir, uid) or None, 30)
    assert any(_alive(p) for p in pids)
    kubectl(cluster, "delete", "migration", "gone", "-n", NS, "--wait=false")
    wait_for("gone deleted", lambda: get_migration(cluster, NS, "gone") is None, 60, operator.log)
    assert not [p for p in pids if _alive(p)], "agents still running after delete"
    state_root = Path(m["status"]["stateStore"].removeprefix("file://"))
    assert not state_root.exists(), "deleteStateOnDelete: true should remove the state"


def test_spec_changes(
    cluster: KubeCluster, operator: OperatorProcess, src_server: S3Server, dst_server: S3Server, tmp_path: Path
) -> None:
    sb, db = start(cluster, "chg", src_server, dst_server, {"x": b"x"}, tmp_path / "state")
    doc = migration("chg", src_server, sb, dst_server, db, tmp_path / "state")
    wait_for("chg finished", terminal(cluster, "chg"), 120, operator.log)
    # What a migration is cannot change once it exists: the API server refuses, naming the field.
    doc["spec"]["target"]["bucket"] = "another-bucket"
    r = kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(doc), check=False)
    assert r.returncode != 0 and "spec.target cannot change once a Migration exists" in r.stderr, r.stderr
    doc["spec"]["target"]["bucket"] = db
    doc["spec"]["nodes"] = 3
    r = kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(doc), check=False)
    assert r.returncode != 0 and "spec.nodes cannot change" in r.stderr, r.stderr
    # Tuning knobs can.
    doc["spec"]["nodes"] = 1
    doc["spec"]["concurrency"] = 8
    kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
    assert get_migration(cluster, NS, "chg")["spec"]["concurrency"] == 8  # type: ignore[index]
