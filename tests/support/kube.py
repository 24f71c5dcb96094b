"""Start a throw-away etcd + kube-apiserver pair on 127.0.0.1 for tests.

No kubelet, controller-manager or scheduler: enough for CRDs, custom objects,
RBAC, events, leases and status patches (what an operator needs).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import os
import secrets
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .procs import LOOPBACK, ServerProcess, free_ports, wait_until
from .tools import tool_path

ADMIN_USER = "skymigrate-admin"
STARTUP_TIMEOUT = 60.0


@dataclass(frozen=True)
class KubeCluster:
    kubeconfig: Path
    server: str  # https://127.0.0.1:PORT
    token: str  # bearer token of ADMIN_USER (group system:masters)
    ca_file: Path  # CA that signed the serving certificate
    client_cert_file: Path  # client certificate for ADMIN_USER (system:masters)
    client_key_file: Path
    etcd_endpoint: str
    workdir: Path
    startup_seconds: float = field(default=0.0, compare=False)

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


# --------------------------------------------------------------------------- certs
def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_pki(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skymigrate-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, org: str | None, server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.IPAddress(ipaddress.IPv4Address(LOOPBACK)),
                    ]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    paths = {
        name: d / name
        for name in ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key", "sa.key", "sa.pub")
    }
    _write_cert(paths["ca.crt"], ca_cert)
    _write_key(paths["ca.key"], ca_key)
    k, c = leaf("kube-apiserver", None, server=True)
    _write_cert(paths["apiserver.crt"], c)
    _write_key(paths["apiserver.key"], k)
    k, c = leaf(ADMIN_USER, "system:masters", server=False)
    _write_cert(paths["admin.crt"], c)
    _write_key(paths["admin.key"], k)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(paths["sa.key"], sa_key)
    paths["sa.pub"].write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return paths


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(path: Path, server: str, token: str, ca: Path) -> None:
    # Token auth keeps the file usable by kubectl, the kubernetes client and kopf.
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: skymigrate-test\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority-data: {_b64(ca)}\n"
        "users:\n"
        f"- name: {ADMIN_USER}\n"
        "  user:\n"
        f"    token: {token}\n"
        "contexts:\n"
        "- name: skymigrate-test\n"
        "  context:\n"
        "    cluster: skymigrate-test\n"
        f"    user: {ADMIN_USER}\n"
        "    namespace: default\n"
        "current-context: skymigrate-test\n"
    )
    path.chmod(0o600)


# --------------------------------------------------------------------------- probes
def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def _etcd_healthy(port: int) -> bool:
    status, body = _get(http.client.HTTPConnection(LOOPBACK, port, timeout=2), "/health", {})
    return status == 200 and b'"health":"true"' in body


def _apiserver_ready(port: int, token: str, ctx: ssl.SSLContext) -> bool:
    conn = http.client.HTTPSConnection(LOOPBACK, port, timeout=2, context=ctx)
    status, body = _get(conn, "/readyz", {"Authorization": f"Bearer {token}"})
    return status == 200 and body.strip() == b"ok"


# --------------------------------------------------------------------------- main
@contextmanager
def running_apiserver(workdir: Path) -> Iterator[KubeCluster]:
    """Run etcd + kube-apiserver on 127.0.0.1 (free ports) until the block exits.

    Everything (data, certs, logs, kubeconfig) goes under workdir. Both processes
    are stopped on exit, also when the block raises or startup fails.
    """
    etcd_bin = tool_path("etcd")
    apiserver_bin = tool_path("kube-apiserver")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pki = _make_pki(workdir / "pki")
    token = secrets.token_hex(24)
    token_file = workdir / "tokens.csv"
    token_file.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    token_file.chmod(0o600)

    client_port, peer_port, api_port = free_ports(3)
    etcd_endpoint = f"http://{LOOPBACK}:{client_port}"
    peer_url = f"http://{LOOPBACK}:{peer_port}"
    server = f"https://{LOOPBACK}:{api_port}"

    with ExitStack() as stack:
        t_build = time.monotonic()
        etcd = ServerProcess(
            "etcd",
            [
                str(etcd_bin),
                "--name=default",
                f"--data-dir={workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_endpoint}",
                f"--advertise-client-urls={etcd_endpoint}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # throw-away data: skip fsync for speed
                "--log-level=warn",
            ],
            workdir / "etcd.log",
        )
        stack.callback(etcd.stop)
        wait_until("etcd /health", lambda: _etcd_healthy(client_port), 30.0, [etcd])

        apiserver = ServerProcess(
            "kube-apiserver",
            [
                str(apiserver_bin),
                f"--etcd-servers={etcd_endpoint}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki['apiserver.crt']}",
                f"--tls-private-key-file={pki['apiserver.key']}",
                f"--client-ca-file={pki['ca.crt']}",
                f"--token-auth-file={token_file}",
                "--anonymous-auth=false",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki['sa.pub']}",
                f"--service-account-signing-key-file={pki['sa.key']}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/24",
                # No controller-manager creates default ServiceAccounts and no kubelet runs:
                # drop the plugins that would reject pods or wait on node-side controllers.
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition,"
                "DefaultStorageClass,StorageObjectInUseProtection,PersistentVolumeClaimResize",
                # Loopback endpoints for the `kubernetes` Service are invalid; skip reconciling.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ],
            workdir / "kube-apiserver.log",
        )
        stack.callback(apiserver.stop)

        ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
        wait_until(
            "kube-apiserver /readyz",
            lambda: _apiserver_ready(api_port, token, ctx),
            STARTUP_TIMEOUT,
            [apiserver, etcd],
            interval=0.2,
        )

        kubeconfig = workdir / "kubeconfig"
        _write_kubeconfig(kubeconfig, server, token, pki["ca.crt"])
        yield KubeCluster(
            kubeconfig=kubeconfig,
            server=server,
            token=token,
            ca_file=pki["ca.crt"],
            client_cert_file=pki["admin.crt"],
            client_key_file=pki["admin.key"],
            etcd_endpoint=etcd_endpoint,
            workdir=workdir,
            startup_seconds=time.monotonic() - t_build,
        )
