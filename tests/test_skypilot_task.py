"""The SkyPilot task built from a Migration, accepted by the real skypilot package's parser and validation.

``validate`` runs in the isolated SkyPilot environment what SkyPilot itself runs before it provisions:
``sky.Task.from_yaml_config``, the client's file-mount checks, then the API server's decode of the YAML
the client sends and ``dag.validate`` (resources checked against SkyPilot's Nebius catalog).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from skymigrate.core.spec import MigrationSpec, ResourcesSpec, load_manifest
from skymigrate.operator.launchers import sky_task
from skymigrate.operator.launchers.base import LaunchRequest
from skymigrate.operator.launchers.sky_client import SkyClient, SkyError
from skymigrate.operator.launchers.skypilot import SkyPilotLauncher

from tests.support import skyfake

KEYS = {
    "SKYMIGRATE_SOURCE_ACCESS_KEY_ID": "AKSRC" + uuid.uuid4().hex[:12].upper(),
    "SKYMIGRATE_SOURCE_SECRET_ACCESS_KEY": "src-" + uuid.uuid4().hex,
    "SKYMIGRATE_TARGET_ACCESS_KEY_ID": "AKDST" + uuid.uuid4().hex[:12].upper(),
    "SKYMIGRATE_TARGET_SECRET_ACCESS_KEY": "dst-" + uuid.uuid4().hex,
    "SKYMIGRATE_STATE_ACCESS_KEY_ID": "AKST" + uuid.uuid4().hex[:12].upper(),
    "SKYMIGRATE_STATE_SECRET_ACCESS_KEY": "state-" + uuid.uuid4().hex,
}
REPO = Path(__file__).resolve().parents[1]
PROFILES = {"SKYMIGRATE_SOURCE_PROFILE": "us-central1", "SKYMIGRATE_TARGET_PROFILE": "eu-north1", **{
    k: v for k, v in KEYS.items() if k.startswith("SKYMIGRATE_STATE_")}}  # fmt: skip


def spec(**over: Any) -> MigrationSpec:
    base: dict[str, Any] = {
        "source": {"endpoint": "https://storage.us-central1.nebius.cloud:443", "bucket": "src-bucket",
                   "credentials": {"secretRef": {"name": "nebius-us"}}},
        "target": {"endpoint": "https://storage.eu-north1.nebius.cloud:443", "bucket": "dst-bucket",
                   "credentials": {"secretRef": {"name": "nebius-eu"}}},
        "stateStore": {"url": "s3://state-bucket/skymigrate", "endpoint": "https://storage.eu-north1.nebius.cloud:443",
                       "credentials": {"secretRef": {"name": "nebius-eu"}}},
        "launcher": {"type": "skypilot"},
        "resources": {"infra": "nebius/eu-north1"},
    }  # fmt: skip
    base.update(over)
    return MigrationSpec.model_validate(base)


def request(s: MigrationSpec, secret_env: dict[str, str] | None = None, name: str = "nebius-copy") -> LaunchRequest:
    uid = str(uuid.uuid4())
    return LaunchRequest("default", name, uid, s, f"s3://state-bucket/skymigrate/default/{name}/{uid}",
                         secret_env=dict(KEYS if secret_env is None else secret_env))  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = skyfake.catalog_home(tmp_path_factory.mktemp("home"))
    (h / ".aws").mkdir()
    (h / ".aws" / "credentials").write_text(
        "[us-central1]\naws_access_key_id = x\naws_secret_access_key = y\n"
        "[eu-north1]\naws_access_key_id = z\naws_secret_access_key = w\n"
    )
    (h / ".aws" / "config").write_text("[profile us-central1]\nregion = us-central1\n")
    return h


@pytest.fixture(scope="module")
def launcher(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkyPilotLauncher]:
    client = SkyClient(python=skyfake.sky_python(), env={"HOME": str(home)})
    yield SkyPilotLauncher(client, tmp_path_factory.mktemp("launcher"))
    client.close()


def validate(launcher: SkyPilotLauncher, req: LaunchRequest) -> dict[str, Any]:
    args = launcher._submit_args(req)
    return launcher.client.call("validate", **args)


# --- the task against SkyPilot's own validation -------------------------------------------------------
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "one-node": ({"nodes": 1}, {"infra": "nebius/eu-north1"}),
    "many-nodes": (
        {"nodes": 16, "resources": {"infra": "nebius", "region": "eu-north1", "cpus": "16+", "memory": "64+"}},
        {"infra": "nebius/eu-north1", "cpus": "16+", "memory": "64+"},
    ),
    "spot": (
        {
            "nodes": 4,
            "resources": {
                "cloud": "nebius",
                "region": "us-central1",
                "instanceType": "cpu-d3_8vcpu-32gb",
                "useSpot": True,
                "diskSize": 200,
            },
        },
        {"infra": "nebius/us-central1", "instance_type": "cpu-d3_8vcpu-32gb", "use_spot": True, "disk_size": 200},
    ),
    "custom-image": (
        {"nodes": 2, "resources": {"infra": "nebius/eu-north1", "image": "docker:ubuntu:22.04"}},
        {"image_id": {"eu-north1": "docker:ubuntu:22.04"}},
    ),
    "managed-recovery": (
        {
            "nodes": 3,
            "launcher": {"type": "skypilot", "recovery": True},
            "resources": {"infra": "nebius", "useSpot": True},
        },
        {"job_recovery": {"strategy": "EAGER_NEXT_REGION", "max_restarts_on_errors": 0}, "use_spot": True},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_task_is_accepted_by_skypilot(launcher: SkyPilotLauncher, case: str) -> None:
    over, want = CASES[case]
    s = spec(**over)
    req = request(s)
    got = validate(launcher, req)
    assert got["name"] == req.cluster_name
    assert got["num_nodes"] == s.nodes
    (res,) = got["resources"]
    for k, v in want.items():
        assert res[k] == v, (k, res)
    if s.launcher.recovery:
        assert "autostop" not in res
    else:
        assert res["autostop"] == {"idle_minutes": s.launcher.autostop_minutes, "down": True}
    # Credentials only as secrets (names listed back by SkyPilot), never among the envs.
    assert got["secrets"] == sorted(KEYS)
    assert not set(got["envs"]) & set(KEYS) and not set(got["envs"].values()) & set(KEYS.values())
    assert got["envs"]["SKYMIGRATE_STATE_URL"] == req.state_url
    assert got["envs"]["SKYMIGRATE_STATE_ENDPOINT"] == "https://storage.eu-north1.nebius.cloud:443"
    assert got["envs"]["SKYMIGRATE_RAMDISK_MB"] == "16384"  # the seed's 16 GB RAM disk by default
    assert got["setup"] == sky_task.SETUP and got["run"] == sky_task.RUN
    (wheel,) = got["file_mounts"].values()
    assert Path(wheel).is_file()


def test_profile_credentials_ship_the_aws_files(
    launcher: SkyPilotLauncher, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    s = spec(
        source={"endpoint": "https://storage.us-central1.nebius.cloud:443", "bucket": "src-bucket",
                "credentials": {"profile": "us-central1"}},
        target={"endpoint": "https://storage.eu-north1.nebius.cloud:443", "bucket": "dst-bucket",
                "credentials": {"profile": "eu-north1"}},
    )  # fmt: skip
    got = validate(launcher, request(s, PROFILES))
    assert got["file_mounts"]["~/.aws/credentials"] == str(home / ".aws" / "credentials")
    assert got["file_mounts"]["~/.aws/config"] == str(home / ".aws" / "config")
    assert got["secrets"] == sorted(PROFILES)


def test_profile_credentials_without_the_files_are_refused(
    launcher: SkyPilotLauncher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile the nodes could not resolve fails before any machine is paid for."""
    (tmp_path / "credentials").write_text("[us-central1]\naws_access_key_id = x\naws_secret_access_key = y\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    req = request(spec(), PROFILES)
    launcher.launch(req)
    st = launcher.poll(req)
    assert st.phase == "Failed" and st.reason == "CredentialsUnavailable"
    assert "profile(s) eu-north1 not found" in st.message


def test_the_shipped_nebius_example_is_accepted(
    launcher: SkyPilotLauncher, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    doc = yaml.safe_load((REPO / "examples" / "nebius-to-nebius.yaml").read_text())
    meta, s = load_manifest(doc)
    got = validate(launcher, request(s, PROFILES, name=meta["name"]))
    assert got["num_nodes"] == 4
    (res,) = got["resources"]
    assert (res["infra"], res["cpus"], res["memory"]) == ("nebius/eu-north1", "16+", "64+")
    assert res["job_recovery"]["strategy"] == "EAGER_NEXT_REGION"  # recovery: true -> a managed job
    assert got["envs"]["SKYMIGRATE_RAMDISK"] == "/mnt/ramdisk" and got["envs"]["SKYMIGRATE_RAMDISK_MB"] == "16384"
    assert "~/.aws/credentials" in got["file_mounts"]


def test_odd_migration_names_give_valid_cluster_names(launcher: SkyPilotLauncher) -> None:
    req = request(spec(), name="Nightly_Backup.v2.of-the-very-long-named-production-bucket")
    got = validate(launcher, req)
    assert got["name"] == req.cluster_name


@pytest.mark.parametrize(
    ("resources", "text"),
    [
        ({"infra": "nebius/mars-1"}, "Invalid region 'mars-1'"),
        ({"infra": "nebius/eu-north1", "instanceType": "cpu-z9_1vcpu"}, "No instance type cpu-z9_1vcpu found"),
        ({"infra": "nebius", "cpus": "many"}, '"cpus" field should be either a number'),
    ],
)
def test_skypilot_rejects_impossible_resources(
    launcher: SkyPilotLauncher, resources: dict[str, Any], text: str
) -> None:
    with pytest.raises(SkyError) as e:
        validate(launcher, request(spec(resources=resources)))
    assert e.value.kind == "invalid" and text in e.value.message


# --- pure builder checks (no SkyPilot needed) --------------------------------------------------------
@pytest.mark.parametrize(
    ("r", "want"),
    [
        ({}, None),
        ({"infra": "nebius"}, "nebius"),
        ({"infra": "nebius", "region": "eu-north1"}, "nebius/eu-north1"),
        ({"infra": "aws/us-east-1", "region": "ignored"}, "aws/us-east-1"),
        ({"cloud": "gcp"}, "gcp"),
        ({"cloud": "gcp", "region": "us-central1"}, "gcp/us-central1"),
        ({"region": "eu-north1"}, "*/eu-north1"),
    ],
)
def test_infra(r: dict[str, Any], want: str | None) -> None:
    assert sky_task.infra(ResourcesSpec.model_validate(r)) == want


def test_task_dict_holds_no_secret_and_ram_disk_follows_spec() -> None:
    s = spec(ramDisk={"size": "24Gi", "path": "/mnt/fast"})
    req = request(s)
    task = sky_task.build(req, sky_task.AgentSource(pip="skymigrate==0.1.0"), ranks=[2, 5])
    text = json.dumps(task)
    assert not any(v in text for v in KEYS.values())
    assert sky_task.secrets(req) == KEYS
    e = task["envs"]
    assert (e["SKYMIGRATE_RAMDISK"], e["SKYMIGRATE_RAMDISK_MB"]) == ("/mnt/fast", str(24 * 1024))
    assert e["SKYMIGRATE_RAMDISK_IS_SPEC_PATH"] == "1"
    assert e["SKYMIGRATE_RANKS"] == "2,5" and e["SKYMIGRATE_AGENT_PIP"] == "skymigrate==0.1.0"
    assert "file_mounts" not in task


# --- the dependency conflict, resolved by two environments ---------------------------------------------
def test_skypilot_lives_in_its_own_environment_and_both_pass_pip_check() -> None:
    import importlib.metadata as md
    import importlib.util
    import subprocess
    import sys

    py = skyfake.sky_python()
    again = subprocess.run(["bash", str(skyfake.SETUP)], capture_output=True, text=True, check=True, timeout=600)
    assert again.stdout.strip().splitlines()[-1] == py  # idempotent: the cached environment is reused
    probe = "import importlib.metadata as m; print(m.version('skypilot'), m.version('click'))"
    sky_version, sky_click = subprocess.run(
        [py, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sky_version == "0.14.1"
    assert tuple(int(x) for x in sky_click.split(".")[:2]) < (8, 2)  # skypilot's pin
    assert tuple(int(x) for x in md.version("click").split(".")[:2]) >= (8, 2)  # kopf's floor, in this env
    assert importlib.util.find_spec("sky") is None  # the operator never imports sky
    for python in (py, sys.executable):
        out = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, f"{python}: {out.stdout}{out.stderr}"
