"""apkfarm-fetcher as its own process, against real RabbitMQ and a real S3 server.

The service runs exactly as deployed (console script, environment settings,
mTLS certificates from ``init_certs``); the tests talk to it only from the
outside: jobs and events on the broker, objects in S3, gRPC over mTLS, the
plaintext health port, /metrics and SIGTERM.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from fixtures.servers import RabbitMQ, S3Server
from fixtures.services import (
    BIN,
    ServiceProcess,
    bucket,
    health_status,
    promtool_check_metrics,
    service_env,
    start_service,
)
from fixtures.source_server import SourceServer, source_server
from grpc_health.v1 import health_pb2

from apkfarm.bus import Delivery, names
from apkfarm.bus.rabbit import RabbitBus
from apkfarm.certs import init_certs
from apkfarm.services.common.tls import TlsFiles, open_channel
from apkfarm.v1 import bus_pb2, common_pb2, fetcher_pb2, fetcher_pb2_grpc

EVENT_TIMEOUT = 60.0
SCRIPT = BIN / "apkfarm-fetcher"
HEALTH_SERVICE = "apkfarm.v1.Fetcher"


def _body(name: str) -> bytes:
    return (f"{name}\n".encode()) * 20_000


@dataclass
class Fetcher:
    service: ServiceProcess
    certs: Path
    amqp_url: str
    s3: S3Server
    sources: SourceServer


@pytest.fixture(scope="module")
def fetcher(
    rabbitmq: RabbitMQ, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fetcher]:
    workdir = tmp_path_factory.mktemp("fetcher")
    certs = workdir / "certs"
    init_certs(certs, builder_archs=["x86_64"])
    with source_server() as sources:
        env = service_env(workdir, certs, "fetcher", s3=s3_server, amqp_url=rabbitmq.url)
        env.update(
            {
                "APKFARM_SOURCE_SITES": f"EXAMPLES_SITE={sources.url('/dist')}",
                "APKFARM_FETCH_WORK_DIR": str(workdir),
                "APKFARM_FETCH_RETRY_DELAY": "0.5",
                "APKFARM_FETCH_ATTEMPTS": "2",
                # The source server is on loopback; nothing else non-public is.
                "APKFARM_FETCH_PRIVATE_NETWORKS": "127.0.0.1/32",
            }
        )
        service = start_service("fetcher", env, workdir, HEALTH_SERVICE)
        try:
            yield Fetcher(service, certs, rabbitmq.url, s3_server, sources)
        finally:
            service.stop(grace=20)


def _source(
    fetcher: Fetcher, name: str, *, sha256: str | None = None, fail_first: int = 0
) -> common_pb2.Source:
    body = _body(name)
    fetcher.sources.add(f"/dist/{name}", body=body, fail_first=fail_first)
    return common_pb2.Source(
        url=f"$(EXAMPLES_SITE)/{name}",
        sha256=sha256 or hashlib.sha256(body).hexdigest(),
        filename=name,
    )


async def _job_outcome(fetcher: Fetcher, source: common_pb2.Source) -> Delivery[bus_pb2.Event]:
    """Publish a FetchJob and return the fetch.* event about that source."""
    bus = RabbitBus(fetcher.amqp_url, connection_name="fetcher-test")
    await bus.start()
    try:
        mine: asyncio.Queue[Delivery[bus_pb2.Event]] = asyncio.Queue()

        async def collect(delivery: Delivery[bus_pb2.Event]) -> None:
            event = delivery.message
            about = getattr(event, event.WhichOneof("kind") or "fetch_done").source
            if about == source:
                await mine.put(delivery)

        await bus.subscribe(["fetch.*"], bus_pb2.Event, collect)
        template = common_pb2.TemplateRef(
            category="main", pkgname="greet", version="1.0-r0", arch="x86_64"
        )
        await bus.publish(names.FETCH_QUEUE, bus_pb2.FetchJob(source=source, template=template))
        return await asyncio.wait_for(mine.get(), timeout=EVENT_TIMEOUT)
    finally:
        await bus.close(grace=1)


async def _call(fetcher: Fetcher, identity: str | None, source: common_pb2.Source) -> object:
    if identity is None:
        # TLS with the farm CA but no client certificate.
        credentials = grpc.ssl_channel_credentials((fetcher.certs / "ca.crt").read_bytes())
        channel = grpc.aio.secure_channel(fetcher.service.grpc_address, credentials)
    else:
        files = TlsFiles.in_directory(fetcher.certs, identity)
        channel = open_channel(fetcher.service.grpc_address, files)
    try:
        stub = fetcher_pb2_grpc.FetcherStub(channel)
        return await stub.Fetch(fetcher_pb2.FetchRequest(source=source), timeout=30)
    except grpc.aio.AioRpcError as error:
        return error
    finally:
        await channel.close()


# --- the tests (in file order: the last one stops the service) -------------------------


@pytest.mark.infra
def test_the_health_port_reports_serving(fetcher: Fetcher) -> None:
    assert (
        health_status(fetcher.service.health_address, HEALTH_SERVICE)
        == health_pb2.HealthCheckResponse.SERVING
    )


@pytest.mark.infra
def test_a_fetch_job_ends_in_fetch_done_and_the_object_in_s3(fetcher: Fetcher) -> None:
    source = _source(fetcher, "greet-1.0.tar.gz")

    delivery = asyncio.run(_job_outcome(fetcher, source))

    assert delivery.routing_key == names.FETCH_DONE
    event = delivery.message
    assert event.emitter == "fetcher"
    done = event.fetch_done
    assert done.blob_key == f"sources/sha256/{source.sha256}"
    assert (done.size, done.already_present) == (len(_body(source.filename)), False)
    assert bucket(fetcher.s3).get_bytes(done.blob_key) == _body(source.filename)
    assert len(fetcher.sources.requests("/dist/greet-1.0.tar.gz")) == 1


@pytest.mark.infra
def test_a_mismatch_job_ends_in_fetch_failed_and_nothing_in_s3(fetcher: Fetcher) -> None:
    wrong = hashlib.sha256(b"a different greet").hexdigest()
    source = _source(fetcher, "greet-2.0.tar.gz", sha256=wrong)

    delivery = asyncio.run(_job_outcome(fetcher, source))

    assert delivery.routing_key == names.FETCH_FAILED
    failed = delivery.message.fetch_failed
    actual = hashlib.sha256(_body("greet-2.0.tar.gz")).hexdigest()
    assert failed.error == (
        f"greet-2.0.tar.gz from {fetcher.sources.url('/dist/greet-2.0.tar.gz')}: "
        f"sha256 mismatch: expected {wrong}, got {actual}"
    )
    assert failed.template.pkgname == "greet"
    store = bucket(fetcher.s3)
    assert not store.exists(f"sources/sha256/{wrong}")
    assert not store.exists(f"sources/sha256/{actual}")


@pytest.mark.infra
def test_a_redirect_to_a_non_public_address_ends_in_fetch_failed(fetcher: Fetcher) -> None:
    name = "greet-3.0.tar.gz"
    fetcher.sources.add(f"/dist/{name}", location="http://[::1]:9/internal.tar.gz")
    source = common_pb2.Source(
        url=f"$(EXAMPLES_SITE)/{name}", sha256=hashlib.sha256(b"x").hexdigest(), filename=name
    )

    delivery = asyncio.run(_job_outcome(fetcher, source))

    assert delivery.routing_key == names.FETCH_FAILED
    assert delivery.message.fetch_failed.error.endswith(
        "::1 resolves to ::1 (not a public address); not a permitted source address"
    )
    assert [seen.status for seen in fetcher.sources.requests(f"/dist/{name}")] == [302]


@pytest.mark.infra
def test_a_transient_failure_is_retried_through_the_broker(fetcher: Fetcher) -> None:
    # Two 500s use up the first delivery's two requests (APKFARM_FETCH_ATTEMPTS=2);
    # the job comes back through the broker's delayed-retry queue and succeeds.
    source = _source(fetcher, "libgreet-1.0.tar.gz", fail_first=2)

    delivery = asyncio.run(_job_outcome(fetcher, source))

    assert delivery.routing_key == names.FETCH_DONE
    assert [seen.status for seen in fetcher.sources.requests("/dist/libgreet-1.0.tar.gz")] == [
        500,
        500,
        200,
    ]
    assert bucket(fetcher.s3).exists(f"sources/sha256/{source.sha256}")


@pytest.mark.infra
def test_grpc_fetch_is_for_the_scheduler_and_operators_only(fetcher: Fetcher) -> None:
    source = _source(fetcher, "tally-1.0.tar.gz")

    async def calls() -> dict[str, object]:
        return {
            identity or "no certificate": await _call(fetcher, identity, source)
            for identity in ("builder-x86_64", "indexer", None, "scheduler", "operator")
        }

    answers = asyncio.run(calls())

    for refused in ("builder-x86_64", "indexer"):
        error = answers[refused]
        assert isinstance(error, grpc.aio.AioRpcError), refused
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert isinstance(answers["no certificate"], grpc.aio.AioRpcError)
    assert answers["no certificate"].code() is grpc.StatusCode.UNAVAILABLE
    scheduler, operator = answers["scheduler"], answers["operator"]
    assert isinstance(scheduler, fetcher_pb2.FetchResponse)
    assert isinstance(operator, fetcher_pb2.FetchResponse)
    assert (scheduler.blob_key, scheduler.already_present) == (
        f"sources/sha256/{source.sha256}",
        False,
    )
    assert operator.already_present
    # Refused callers caused no download; the two allowed calls caused one.
    assert len(fetcher.sources.requests("/dist/tally-1.0.tar.gz")) == 1
    assert bucket(fetcher.s3).get_bytes(scheduler.blob_key) == _body("tally-1.0.tar.gz")


@pytest.mark.infra
def test_metrics_show_the_bytes_fetched(fetcher: Fetcher) -> None:
    source = _source(fetcher, "wordfreq-1.0.tar.gz")
    bytes_key = ("apkfarm_fetch_bytes_total", ())
    downloaded_key = ("apkfarm_fetches_total", (("result", "downloaded"),))
    count_key = ("apkfarm_fetch_duration_seconds_count", ())
    before = fetcher.service.metrics()

    answer = asyncio.run(_call(fetcher, "scheduler", source))

    after = fetcher.service.metrics()
    assert isinstance(answer, fetcher_pb2.FetchResponse) and not answer.already_present
    assert after[bytes_key] - before[bytes_key] == len(_body(source.filename))
    assert after[downloaded_key] - before[downloaded_key] == 1
    assert after[count_key] - before[count_key] == 1
    # Every result label is exported, at zero if nothing had that result.
    for result in ("downloaded", "deduplicated", "mismatch", "failed"):
        assert ("apkfarm_fetches_total", (("result", result),)) in after


@pytest.mark.infra
def test_metrics_pass_promtool(fetcher: Fetcher) -> None:
    checked = promtool_check_metrics(fetcher.service.metrics_text())
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_console_script_help_lists_its_environment() -> None:
    assert SCRIPT.is_file(), f"{SCRIPT} is missing: run .venv/bin/pip install -e ."
    done = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    for env in (
        "APKFARM_SOURCE_SITES",
        "APKFARM_FETCH_MAX_BYTES",
        "APKFARM_FETCH_TIMEOUT",
        "APKFARM_FETCH_PER_HOST",
        "APKFARM_ALLOW_FILE_URLS",
        "APKFARM_AMQP_URL",
        "APKFARM_S3_ENDPOINT",
        "APKFARM_TLS_DIR",
    ):
        assert env in done.stdout, env
    assert shutil.which("apkfarm-fetcher", path=str(SCRIPT.parent)) == str(SCRIPT)


@pytest.mark.infra
def test_sigterm_stops_the_service_cleanly(fetcher: Fetcher) -> None:
    popen = fetcher.service.proc.popen
    assert popen is not None
    popen.send_signal(signal.SIGTERM)
    assert popen.wait(timeout=30) == 0
    log = fetcher.service.proc.log_path.read_text()
    assert '"message": "stopped"' in log
    # Credentials never reach the log (the config is logged masked).
    assert fetcher.s3.secret_key not in log
    assert fetcher.amqp_url.split("@")[0].rsplit(":", 1)[1] not in log
