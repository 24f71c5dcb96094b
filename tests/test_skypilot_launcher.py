"""The SkyPilot launcher's state machine, against a fake standing exactly at SkyPilot's SDK functions.

The launcher, its runner process and SkyPilot's own task parsing/validation are real (in the isolated
SkyPilot environment); only the calls that would reach an API server and a cloud are faked
(tests/support/skyfake.py). Every test ends by checking that no secret value reached a file the
launcher wrote or a log line.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from skymigrate.core.spec import MigrationSpec
from skymigrate.operator.launchers.base import LaunchRequest
from skymigrate.operator.launchers.sky_client import SkyClient
from skymigrate.operator.launchers.sky_task import AgentSource
from skymigrate.operator.launchers.skypilot import SkyPilotLauncher

from tests.support import skyfake

SECRETS = {
    "SKYMIGRATE_SOURCE_ACCESS_KEY_ID": "AKSRC" + uuid.uuid4().hex[:12].upper(),
    "SKYMIGRATE_SOURCE_SECRET_ACCESS_KEY": "srcsecret-" + uuid.uuid4().hex,
    "SKYMIGRATE_TARGET_ACCESS_KEY_ID": "AKDST" + uuid.uuid4().hex[:12].upper(),
    "SKYMIGRATE_TARGET_SECRET_ACCESS_KEY": "dstsecret-" + uuid.uuid4().hex,
    "SKYMIGRATE_TARGET_SESSION_TOKEN": "token-" + uuid.uuid4().hex,
    "SKYMIGRATE_STATE_ACCESS_KEY_ID": "AKSTATE" + uuid.uuid4().hex[:10].upper(),
    "SKYMIGRATE_STATE_SECRET_ACCESS_KEY": "statesecret-" + uuid.uuid4().hex,
}


@pytest.fixture(scope="session")
def sky_py() -> str:
    return skyfake.sky_python()


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("skyfake")


@pytest.fixture(scope="module")
def fake_env(fake_dir: Path) -> skyfake.FakeState:
    return skyfake.FakeState(fake_dir / "fake.json")


@pytest.fixture(scope="module")
def client(sky_py: str, fake_env: skyfake.FakeState, fake_dir: Path) -> Iterator[SkyClient]:
    """Runner processes are pooled across tests (importing sky takes seconds); they read HOME (with a
    catalog) and the fake's state file when they start."""
    env = {"HOME": str(skyfake.catalog_home(fake_dir / "home")), "SKYFAKE_STATE": str(fake_env.path)}
    c = SkyClient(python=sky_py, runner=skyfake.THIS, log_file=fake_dir / "client.log", env=env)
    yield c
    c.close()


@pytest.fixture
def fake(fake_env: skyfake.FakeState) -> skyfake.FakeState:
    fake_env.reset()
    return fake_env


@pytest.fixture
def launcher(
    client: SkyClient, tmp_path: Path, fake: skyfake.FakeState, caplog: pytest.LogCaptureFixture
) -> Iterator[SkyPilotLauncher]:
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "launcher"
    yield SkyPilotLauncher(client, root, poll_interval=0, teardown_attempts=3, teardown_backoff=0)
    # The invariant every scenario must keep: no secret value in any file we wrote or in any log line.
    # (The fake's own state file stands for SkyPilot's API server, which does hold the secrets.)
    assert client.log_file is not None
    for p in [*root.rglob("*"), client.log_file]:
        if p.is_file():
            data = p.read_bytes()
            for name, value in SECRETS.items():
                assert value.encode() not in data, f"{name} leaked into {p}"
    for name, value in SECRETS.items():
        assert value not in caplog.text, f"{name} leaked into a log line"


def request(*, nodes: int = 2, recovery: bool = False, **resources: object) -> LaunchRequest:
    spec = MigrationSpec.model_validate(
        {
            "source": {"endpoint": "https://storage.us-central1.nebius.cloud", "bucket": "src-bucket"},
            "target": {"endpoint": "https://storage.eu-north1.nebius.cloud", "bucket": "dst-bucket"},
            "nodes": nodes,
            "resources": {"infra": "nebius/eu-north1", "cpus": "8+", **resources},
            "launcher": {"type": "skypilot", "recovery": recovery, "autostopMinutes": 45},
            "stateStore": {"url": "s3://state-bucket/skymigrate", "endpoint": "https://storage.eu-north1.nebius.cloud"},
        }
    )
    uid = str(uuid.uuid4())
    return LaunchRequest("default", "nebius-copy", uid, spec, f"s3://state-bucket/skymigrate/default/nebius-copy/{uid}",
                         secret_env=dict(SECRETS))  # fmt: skip


def test_launch_success_runs_then_finishes_then_tears_down(launcher: SkyPilotLauncher, fake: skyfake.FakeState) -> None:
    req = request(nodes=3)
    launcher.launch(req)
    st = launcher.poll(req)
    assert st.phase == "Running", st
    assert [n.phase for n in st.nodes] == ["Running"] * 3

    (task,) = fake.read()["tasks"]
    assert task["num_nodes"] == 3 and task["name"] == req.cluster_name
    (res,) = task["resources"]
    assert res["infra"] == "nebius/eu-north1" and res["autostop"] == {"idle_minutes": 45, "down": True}
    # Credentials reached SkyPilot as secrets, with their values intact; none is a plain env.
    assert task["secrets"] == {k: skyfake.digest(v) for k, v in SECRETS.items()}
    assert not set(task["envs"]) & set(SECRETS)
    assert all(v not in task["envs"].values() for v in SECRETS.values())
    # The agent travels as a wheel of this very code, copied by SkyPilot's file mounts.
    (wheel_dst,) = task["file_mounts"]
    assert wheel_dst.endswith(".whl") and task["envs"]["SKYMIGRATE_AGENT_WHEEL"] in wheel_dst

    fake.set_job(req.cluster_name, 1, "SUCCEEDED")
    st = launcher.poll(req)
    assert st.phase == "Finished" and {n.phase for n in st.nodes} == {"Succeeded"}

    launcher.teardown(req)
    assert req.cluster_name not in fake.read()["clusters"]
    assert launcher.poll(req).phase == "Gone"
    launcher.teardown(req)  # idempotent: the cluster is already gone
    assert [c["op"] for c in fake.calls() if c["op"] in ("launch", "down")] == ["launch", "down", "down"]


@pytest.mark.parametrize(
    ("outcome", "text"),
    [("no_resources", "Failed to acquire resources in all zones"), ("no_cloud", "sky check")],
)
def test_provisioning_failure_is_failed_with_skypilots_reason(
    launcher: SkyPilotLauncher, fake: skyfake.FakeState, outcome: str, text: str
) -> None:
    fake.script(launch=[outcome])
    req = request()
    launcher.launch(req)
    st = launcher.poll(req)
    assert st.phase == "Failed"
    assert st.reason == "ProvisioningFailed"
    assert text in st.message
    assert all(n.phase == "Failed" for n in st.nodes)
    # Nothing was provisioned; tearing down still asks SkyPilot and treats "no such cluster" as done.
    launcher.teardown(req)
    assert [c["op"] for c in fake.calls() if c["op"] in ("launch", "down")] == ["launch", "down"]


def test_node_lost_then_relaunched_on_the_repaired_cluster(launcher: SkyPilotLauncher, fake: skyfake.FakeState) -> None:
    req = request(nodes=2, useSpot=True)
    launcher.launch(req)
    # Spot preemption of one node: SkyPilot marks the cluster INIT and the job fails.
    fake.set_cluster(req.cluster_name, "INIT", "Cluster is abnormal: 1 of 2 nodes are terminated (preempted)")
    fake.set_job(req.cluster_name, 1, "FAILED_DRIVER")
    st = launcher.poll(req)
    assert st.phase == "Finished"
    assert [n.phase for n in st.nodes] == ["Lost", "Lost"]
    assert "preempted" in st.nodes[1].message

    launcher.relaunch(req, [1])  # cluster not UP: launch again (re-provisions), only rank 1 works
    launches = fake.calls("launch")
    assert len(launches) == 2
    assert fake.read()["tasks"][-1]["envs"]["SKYMIGRATE_RANKS"] == "1"
    st = launcher.poll(req)
    assert st.nodes[1].phase == "Running" and "job 2" in st.nodes[1].message
    assert st.nodes[0].phase == "Failed"  # its last job died with the node; the operator relaunches it too

    launcher.relaunch(req, [0])  # cluster UP again: a job on the running cluster, no re-provisioning
    assert len(fake.calls("exec")) == 1 and len(fake.calls("launch")) == 2
    assert fake.read()["tasks"][-1]["envs"]["SKYMIGRATE_RANKS"] == "0"
    fake.set_job(req.cluster_name, 2, "SUCCEEDED")
    fake.set_job(req.cluster_name, 3, "SUCCEEDED")
    st = launcher.poll(req)
    assert st.phase == "Finished" and [n.phase for n in st.nodes] == ["Succeeded", "Succeeded"]
    launcher.teardown(req)


def test_managed_job_recovers_from_preemption(launcher: SkyPilotLauncher, fake: skyfake.FakeState) -> None:
    req = request(nodes=2, recovery=True, useSpot=True)
    launcher.launch(req)
    assert [c["op"] for c in fake.calls() if c["op"] in ("launch", "jobs.launch")] == ["jobs.launch"]
    (res,) = fake.read()["tasks"][0]["resources"]
    assert res["job_recovery"]["strategy"] == "EAGER_NEXT_REGION" and "autostop" not in res
    assert launcher.poll(req).phase == "Launching"

    fake.set_managed(1, "RUNNING")
    assert launcher.poll(req).phase == "Running"
    fake.set_managed(1, "RECOVERING", recovery_count=1)
    st = launcher.poll(req)
    assert st.phase == "Launching"
    assert all(n.phase == "Launching" and "recovering after preemption (recoveries: 1)" in n.message for n in st.nodes)
    fake.set_managed(1, "RUNNING")
    fake.set_managed(1, "SUCCEEDED")
    assert launcher.poll(req).phase == "Finished"
    launcher.teardown(req)
    (cancel,) = fake.calls("jobs.cancel")
    assert cancel["job_ids"] == [1]


def test_managed_job_without_capacity_fails_with_reason(launcher: SkyPilotLauncher, fake: skyfake.FakeState) -> None:
    fake.script(managed_status="FAILED_NO_RESOURCE", managed_failure="No capacity for cpu-d3_8vcpu-32gb in eu-north1")
    req = request(recovery=True)
    launcher.launch(req)
    st = launcher.poll(req)
    assert st.phase == "Failed" and st.reason == "ProvisioningFailed"
    assert "No capacity for cpu-d3_8vcpu-32gb" in st.message
    launcher.teardown(req)


def test_deletion_mid_launch_cancels_and_tears_down(launcher: SkyPilotLauncher, fake: skyfake.FakeState) -> None:
    fake.script(launch=["hang"])
    req = request()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            launcher.launch(req)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    fake.wait_for(lambda d: any(r["status"] == "PENDING" for r in d["requests"].values()))
    # Polls from other threads while the launch blocks: Launching, with SkyPilot's progress.
    st = launcher.poll(req)
    assert st.phase == "Launching" and "provisioning 2 nodes" in st.message
    launcher.teardown(req)
    t.join(timeout=60)
    assert not t.is_alive() and not errors
    (cancel,) = fake.calls("api_cancel")
    assert cancel["ids"] == ["req-1"]
    assert req.cluster_name not in fake.read()["clusters"]
    st = launcher.poll(req)
    assert st.phase == "Gone" and st.reason == ""  # cancelled by us: not a failure


def test_teardown_failure_is_retried(launcher: SkyPilotLauncher, fake: skyfake.FakeState) -> None:
    req = request()
    launcher.launch(req)
    fake.script(down_failures=2)
    launcher.teardown(req)  # attempts 1 and 2 fail, 3 succeeds
    assert len(fake.calls("down")) == 3
    assert req.cluster_name not in fake.read()["clusters"]


def test_teardown_that_keeps_failing_raises_then_succeeds_later(
    launcher: SkyPilotLauncher, fake: skyfake.FakeState
) -> None:
    req = request()
    launcher.launch(req)
    fake.script(down_failures=5)
    with pytest.raises(RuntimeError, match=f"could not tear down {req.cluster_name}.*API timeout"):
        launcher.teardown(req)
    assert len(fake.calls("down")) == 3
    assert req.cluster_name in fake.read()["clusters"]  # still there: the finalizer must keep waiting
    fake.script(down_failures=0)
    launcher.teardown(req)  # the operator's retry
    assert req.cluster_name not in fake.read()["clusters"]


def test_restarted_operator_reattaches_instead_of_launching_twice(
    launcher: SkyPilotLauncher, fake: skyfake.FakeState, tmp_path: Path
) -> None:
    req = request()
    launcher.launch(req)
    # A new launcher on the same state dir (operator restart): launch is a no-op, poll sees the job.
    again = SkyPilotLauncher(launcher.client, launcher.root, poll_interval=0)
    again.launch(req)
    assert again.poll(req).phase == "Running"
    # State dir lost (new pod without a volume): the cluster is found by name.
    fresh = SkyPilotLauncher(launcher.client, tmp_path / "fresh", poll_interval=0)
    fresh.launch(req)
    assert fresh.poll(req).phase == "Running"
    assert len(fake.calls("launch")) == 1
    launcher.teardown(req)


def test_restart_mid_launch_follows_the_same_request(launcher: SkyPilotLauncher, fake: skyfake.FakeState) -> None:
    fake.script(launch=["hang"])
    req = request()
    first = threading.Thread(target=launcher.launch, args=(req,))
    first.start()
    fake.wait_for(lambda d: any(r["status"] == "PENDING" for r in d["requests"].values()))
    # The operator restarts while SkyPilot is still provisioning: the new one follows request req-1.
    again = SkyPilotLauncher(launcher.client, launcher.root, poll_interval=0)
    second = threading.Thread(target=again.launch, args=(req,))
    second.start()
    fake.complete_launch("req-1", req.cluster_name)
    first.join(timeout=60)
    second.join(timeout=60)
    assert not first.is_alive() and not second.is_alive()
    assert len(fake.calls("launch")) == 1
    assert again.poll(req).phase == "Running"
    again.teardown(req)


def test_local_state_store_is_refused(launcher: SkyPilotLauncher, fake: skyfake.FakeState) -> None:
    req = request()
    local = LaunchRequest(req.namespace, req.name, req.uid, req.spec, "file:///var/lib/state", dict(SECRETS))
    launcher.launch(local)
    st = launcher.poll(local)
    assert st.phase == "Failed" and "s3:// state store" in st.message
    assert fake.calls("launch") == []


def test_missing_skypilot_environment_is_a_clear_failure(tmp_path: Path) -> None:
    lau = SkyPilotLauncher(
        SkyClient(python=str(tmp_path / "nope" / "python")), tmp_path / "l", agent=AgentSource(pip="skymigrate")
    )
    req = request()
    lau.launch(req)
    st = lau.poll(req)
    assert st.phase == "Failed" and st.reason == "SkyPilotNotInstalled"
    assert "setup-skypilot-env.sh" in st.message
