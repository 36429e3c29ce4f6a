"""apkfarm-healthcheck (deploy/healthcheck.py) against real gRPC health servers on 127.0.0.1."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from deploy_support import REPO_ROOT
from fixtures.tools import load_script
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


healthcheck = load_script(REPO_ROOT / "deploy" / "healthcheck.py", "apkfarm_healthcheck")


def issue(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    """A farm CA and the identity `scheduler`, laid out like `apkfarm certs init`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("apkfarm test CA", ca_key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue("scheduler", key, (ca.subject, ca_key))
    (tmp_path / "ca.crt").write_bytes(pem(ca))
    (tmp_path / "scheduler.crt").write_bytes(pem(cert))
    (tmp_path / "scheduler.key").write_bytes(key_pem(key))
    return tmp_path


def start_server(
    credentials: grpc.ServerCredentials | None,
) -> tuple[grpc.Server, health.HealthServicer, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, servicer, port


@pytest.fixture
def plain_server() -> Iterator[tuple[health.HealthServicer, int]]:
    server, servicer, port = start_server(None)
    yield servicer, port
    server.stop(grace=None)


def test_health_listener_status_decides_the_exit_code(
    plain_server: tuple[health.HealthServicer, int],
) -> None:
    servicer, port = plain_server
    env = {"APKFARM_HEALTH_LISTEN": f"0.0.0.0:{port}"}
    servicer.set("", NOT_SERVING)
    assert healthcheck.check(env, "", 3.0) == "NOT_SERVING"
    servicer.set("", SERVING)
    assert healthcheck.check(env, "", 3.0) == "SERVING"
    servicer.set("liveness", SERVING)
    assert healthcheck.check(env, "liveness", 3.0) == "SERVING"


def test_nothing_listening_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    server, _servicer, port = start_server(None)
    server.stop(grace=None)
    monkeypatch.setenv("APKFARM_HEALTH_LISTEN", f"0.0.0.0:{port}")
    assert healthcheck.main(["--timeout", "1"]) == 1


def test_mtls_port_is_asked_with_the_services_own_identity(tls_dir: Path) -> None:
    credentials = grpc.ssl_server_credentials(
        [((tls_dir / "scheduler.key").read_bytes(), (tls_dir / "scheduler.crt").read_bytes())],
        root_certificates=(tls_dir / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    server, servicer, port = start_server(credentials)
    try:
        servicer.set("", SERVING)
        env = {
            "APKFARM_GRPC_LISTEN": f"0.0.0.0:{port}",
            "APKFARM_TLS_DIR": str(tls_dir),
            "APKFARM_IDENTITY": "scheduler",
        }
        assert healthcheck.check(env, "", 3.0) == "SERVING"
        # Plaintext against the mTLS port is refused, as it must be.
        with pytest.raises(grpc.RpcError):
            healthcheck.check({**env, "APKFARM_INSECURE_NO_TLS": "true"}, "", 2.0)
    finally:
        server.stop(grace=None)


def test_mtls_without_an_identity_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="APKFARM_IDENTITY"):
        healthcheck.open_channel({"APKFARM_GRPC_LISTEN": "0.0.0.0:50051"})
