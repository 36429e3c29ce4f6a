"""The Prometheus ``/metrics`` endpoint of a service."""

from __future__ import annotations

from prometheus_client import start_http_server


def start_metrics_server(listen: str) -> int:
    """Serve the default registry on ``listen`` ("host:port"); returns the bound port."""
    host, _, port_text = listen.rpartition(":")
    server, _thread = start_http_server(int(port_text), addr=host or "127.0.0.1")
    port: int = server.server_port
    return port
