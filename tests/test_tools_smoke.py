"""Smoke tests for the test-only tools: kube-apiserver/etcd/kubectl and the Go S3 server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gos3 import S3Server, running_gos3
from tests.support.kube import KubeCluster, running_apiserver
from tests.support.tools import tool_path

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.skymigrate.io
spec:
  group: smoke.skymigrate.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas]
            properties:
              replicas: {type: integer, minimum: 1}
"""


def widget(name: str, replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "smoke.skymigrate.io/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas},
        }
    )


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with running_apiserver(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


def kubectl(
    cluster: KubeCluster, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(tool_path("kubectl")), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc


@pytest.mark.kube
def test_apiserver_crd_validation(kube: KubeCluster, tmp_path: Path) -> None:
    assert kube.server.startswith("https://127.0.0.1:")
    crd_file = tmp_path / "crd.yaml"
    crd_file.write_text(CRD)
    kubectl(kube, "apply", "-f", str(crd_file))
    kubectl(kube, "wait", "--for=condition=Established", "--timeout=30s", "crd/widgets.smoke.skymigrate.io")
    listed = kubectl(kube, "get", "crd", "-o", "name").stdout
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.smoke.skymigrate.io" in listed

    kubectl(kube, "apply", "-f", "-", stdin=widget("good", 2))
    got = json.loads(kubectl(kube, "get", "widget", "good", "-o", "json").stdout)
    assert got["spec"]["replicas"] == 2

    bad = kubectl(kube, "apply", "-f", "-", stdin=widget("bad", 0), check=False)
    assert bad.returncode != 0
    assert "spec.replicas" in bad.stderr
    assert "should be greater than or equal to 1" in bad.stderr, bad.stderr
    assert kubectl(kube, "get", "widget", "bad", check=False).returncode != 0


@pytest.mark.kube
def test_apiserver_listens_only_on_loopback(kube: KubeCluster) -> None:
    port = kube.server.rsplit(":", 1)[1]
    proc = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip("ss not available")
    ours = [line.split()[3] for line in proc.stdout.splitlines() if line.split()[3].endswith(f":{port}")]
    assert ours == [f"127.0.0.1:{port}"]


@pytest.fixture(scope="module")
def gos3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_gos3(tmp_path_factory.mktemp("gos3"), "smokeaccess", "smokesecret123") as s:
        yield s


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _client(server: S3Server, secret: str) -> Any:
    """Through the project's one S3 client factory, as the product talks to the server."""
    from skymigrate.core.credentials import Credentials
    from skymigrate.core.s3 import make_client

    return make_client(server.endpoint_url, Credentials(server.access_key, secret), server.region, attempts=2)


@pytest.mark.gos3
def test_gos3_objects_and_multipart(gos3: S3Server) -> None:
    s3 = _client(gos3, gos3.secret_key)
    bucket = f"smoke-{int(time.time())}-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)

    small = os.urandom(1234)
    s3.put_object(
        Bucket=bucket, Key="dir/small.bin", Body=small, ContentType="application/x-smoke", Metadata={"color": "blue"}
    )
    head = s3.head_object(Bucket=bucket, Key="dir/small.bin")
    assert head["ContentLength"] == len(small)
    assert head["ContentType"] == "application/x-smoke"
    assert head["Metadata"] == {"color": "blue"}
    got = s3.get_object(Bucket=bucket, Key="dir/small.bin")
    assert sha256(got["Body"].read()) == sha256(small)
    assert got["Metadata"] == {"color": "blue"}

    part_size = 5 * 1024 * 1024
    parts_data = [os.urandom(part_size), os.urandom(part_size)]
    mpu = s3.create_multipart_upload(
        Bucket=bucket, Key="big.bin", ContentType="video/mp4", Metadata={"origin": "smoke"}
    )
    parts = []
    for n, data in enumerate(parts_data, start=1):
        r = s3.upload_part(Bucket=bucket, Key="big.bin", UploadId=mpu["UploadId"], PartNumber=n, Body=data)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="big.bin", UploadId=mpu["UploadId"], MultipartUpload={"Parts": parts}
    )
    whole = b"".join(parts_data)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(whole)
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"origin": "smoke"}
    assert head["ETag"].strip('"').endswith("-2")
    assert sha256(s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()) == sha256(whole)

    listed = s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    assert listed["KeyCount"] == 1 and listed["IsTruncated"]
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=listed["NextContinuationToken"])
    keys = [o["Key"] for o in listed["Contents"] + rest["Contents"]]
    assert sorted(keys) == ["big.bin", "dir/small.bin"]
    sizes = {o["Key"]: o["Size"] for o in listed["Contents"] + rest["Contents"]}
    assert sizes == {"big.bin": len(whole), "dir/small.bin": len(small)}


@pytest.mark.gos3
def test_gos3_rejects_bad_credentials(gos3: S3Server) -> None:
    from botocore.exceptions import ClientError

    s3 = _client(gos3, "wrong-secret")
    with pytest.raises(ClientError):
        s3.list_buckets()
