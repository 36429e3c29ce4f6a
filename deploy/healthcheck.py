#!/opt/apkfarm/bin/python
"""Exit 0 when the apkfarm service in this container answers SERVING to gRPC health.

Installed in every service image as ``apkfarm-healthcheck``; compose and Docker
healthchecks run it. It reads the service's own environment:

- ``APKFARM_HEALTH_LISTEN`` set: ask the plaintext health-only listener there;
- otherwise ask ``APKFARM_GRPC_LISTEN`` over mTLS with the service's own
  identity (``APKFARM_TLS_DIR``, ``APKFARM_IDENTITY``), or in plaintext when
  ``APKFARM_INSECURE_NO_TLS`` is true.

The answer is the service's own dependency-aware health status, so the check
fails while the broker, the object store or the keys are not usable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_TRUE = {"1", "true", "yes", "on"}


def local_target(listen: str) -> str:
    """The loopback address of a ``host:port`` listen setting."""
    _host, _sep, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"cannot read a port from listen address {listen!r}")
    return f"127.0.0.1:{port}"


def open_channel(environ: dict[str, str]) -> grpc.Channel:
    health_listen = environ.get("APKFARM_HEALTH_LISTEN", "")
    if health_listen:
        return grpc.insecure_channel(local_target(health_listen))
    target = local_target(environ.get("APKFARM_GRPC_LISTEN", "127.0.0.1:50051"))
    if environ.get("APKFARM_INSECURE_NO_TLS", "").strip().lower() in _TRUE:
        return grpc.insecure_channel(target)
    tls_dir = Path(environ.get("APKFARM_TLS_DIR", "/run/secrets/apkfarm-tls"))
    identity = environ.get("APKFARM_IDENTITY", "")
    if not identity:
        raise ValueError("APKFARM_IDENTITY is not set: cannot pick a client certificate")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(tls_dir / "ca.crt").read_bytes(),
        private_key=(tls_dir / f"{identity}.key").read_bytes(),
        certificate_chain=(tls_dir / f"{identity}.crt").read_bytes(),
    )
    # The certificate names the identity, not 127.0.0.1.
    options = [("grpc.ssl_target_name_override", identity)]
    return grpc.secure_channel(target, credentials, options=options)


def check(environ: dict[str, str], service: str, timeout: float) -> str:
    """The status name the server reports for ``service`` ("" is the whole server)."""
    with open_channel(environ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", default="", help="gRPC service name (default: the server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    try:
        status = check(dict(os.environ), args.service, args.timeout)
    except (grpc.RpcError, OSError, ValueError) as error:
        print(f"apkfarm-healthcheck: not healthy: {error}", file=sys.stderr)
        return 1
    print(f"apkfarm-healthcheck: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
