"""The launcher against a real SkyPilot API server, started locally the way a laptop run starts it.

Nothing is faked: ``sky.launch`` goes through SkyPilot's client, a local API server on 127.0.0.1 and
its optimizer, which finds no cloud credentials here and refuses. That is the provisioning failure a
user without `sky check` passing would meet, and it must reach the Migration as Failed with SkyPilot's
own reason; teardown then finds no cluster and returns.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from skymigrate.core.spec import MigrationSpec
from skymigrate.operator.launchers.base import LaunchRequest
from skymigrate.operator.launchers.sky_client import SkyClient
from skymigrate.operator.launchers.skypilot import SkyPilotLauncher
from skymigrate.operator.locals3 import free_port

from tests.support import skyfake

pytestmark = pytest.mark.slow  # the local API server takes a minute or two to start on a busy machine

SECRET = "local-api-secret-" + uuid.uuid4().hex


@pytest.fixture
def client(tmp_path: Path) -> Iterator[SkyClient]:
    py = skyfake.sky_python()
    env = {
        "HOME": str(skyfake.catalog_home(tmp_path / "home")),
        "SKYPILOT_API_SERVER_LOCAL_PORT": str(free_port()),
    }
    c = SkyClient(python=py, env=env, log_file=tmp_path / "client.log")
    yield c
    c.close()
    sky = Path(py).with_name("sky")
    subprocess.run([str(sky), "api", "stop"], env={**c._env()}, capture_output=True, timeout=180, check=False)


def test_launch_without_cloud_credentials_fails_with_skypilots_reason(client: SkyClient, tmp_path: Path) -> None:
    spec = MigrationSpec.model_validate(
        {
            "source": {"endpoint": "https://storage.us-central1.nebius.cloud:443", "bucket": "src-bucket"},
            "target": {"endpoint": "https://storage.eu-north1.nebius.cloud:443", "bucket": "dst-bucket"},
            "nodes": 2,
            "resources": {"infra": "nebius/eu-north1", "cpus": "8+"},
            "launcher": {"type": "skypilot"},
            "stateStore": {"url": "s3://state-bucket/m", "endpoint": "https://storage.eu-north1.nebius.cloud:443"},
        }
    )
    uid = str(uuid.uuid4())
    req = LaunchRequest("default", "no-cloud", uid, spec, f"s3://state-bucket/m/default/no-cloud/{uid}",
                        secret_env={"SKYMIGRATE_SOURCE_ACCESS_KEY_ID": "AKLOCAL" + uuid.uuid4().hex[:8].upper(),
                                    "SKYMIGRATE_SOURCE_SECRET_ACCESS_KEY": SECRET})  # fmt: skip
    root = tmp_path / "launcher"
    launcher = SkyPilotLauncher(client, root, poll_interval=0, teardown_backoff=0)
    launcher.launch(req)
    st = launcher.poll(req)
    assert st.phase == "Failed" and st.reason == "ProvisioningFailed", st
    assert "sky check" in st.message
    launcher.teardown(req)  # no cluster exists: SkyPilot says so, and that is a finished teardown
    assert client.log_file is not None
    logged = client.log_file.read_text()
    assert "SkyPilot API server started" in logged and req.cluster_name in logged
    for p in [*root.rglob("*"), client.log_file]:
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p
