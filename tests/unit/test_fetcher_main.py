"""apkfarm-fetcher's configuration and command line."""

from __future__ import annotations

import ipaddress

import pytest

from apkfarm.services.common.config import ConfigError, load_config
from apkfarm.services.fetcher.destinations import DestinationPolicy
from apkfarm.services.fetcher.download import DownloadLimits
from apkfarm.services.fetcher.main import FetcherConfig, main
from apkfarm.services.fetcher.sites import DEFAULT_SITES

FETCHER_VARIABLES = (
    "APKFARM_SOURCE_SITES",
    "APKFARM_FETCH_MAX_BYTES",
    "APKFARM_FETCH_TIMEOUT",
    "APKFARM_FETCH_PER_HOST",
    "APKFARM_ALLOW_FILE_URLS",
    "APKFARM_FETCH_MAX_REDIRECTS",
    "APKFARM_FETCH_ATTEMPTS",
    "APKFARM_FETCH_STALL_TIMEOUT",
    "APKFARM_FETCH_CONCURRENCY",
    "APKFARM_FETCH_RETRY_DELAY",
    "APKFARM_FETCH_WORK_DIR",
    "APKFARM_FETCH_PRIVATE_NETWORKS",
)
COMMON_VARIABLES = (
    "APKFARM_GRPC_LISTEN",
    "APKFARM_HEALTH_LISTEN",
    "APKFARM_METRICS_LISTEN",
    "APKFARM_TLS_DIR",
    "APKFARM_IDENTITY",
    "APKFARM_AMQP_URL",
    "APKFARM_S3_ENDPOINT",
    "APKFARM_S3_SECRET_KEY",
)


def test_help_lists_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: apkfarm-fetcher")
    for env in (*FETCHER_VARIABLES, *COMMON_VARIABLES):
        assert env in out, env


def test_settings_come_from_the_environment() -> None:
    config = load_config(
        FetcherConfig,
        {
            "APKFARM_SOURCE_SITES": "EXAMPLES_SITE=http://127.0.0.1:8000/dist",
            "APKFARM_FETCH_MAX_BYTES": "1000",
            "APKFARM_FETCH_TIMEOUT": "12.5",
            "APKFARM_FETCH_PER_HOST": "2",
            "APKFARM_ALLOW_FILE_URLS": "true",
            "APKFARM_FETCH_MAX_REDIRECTS": "0",
        },
    )
    assert config.allow_file_urls is True
    limits = config.limits()
    assert limits == DownloadLimits(
        max_bytes=1000,
        timeout=12.5,
        max_redirects=0,
        attempts=5,
        stall_timeout=60.0,
        per_host=2,
    )
    sites = config.sites()
    assert sites["EXAMPLES_SITE"] == "http://127.0.0.1:8000/dist"
    assert sites["GNU_SITE"] == DEFAULT_SITES["GNU_SITE"]


def test_defaults_refuse_file_urls_and_non_public_addresses() -> None:
    config = load_config(FetcherConfig, {})
    assert config.allow_file_urls is False
    assert config.destinations() == DestinationPolicy()


def test_an_operator_names_the_private_networks_a_mirror_is_in() -> None:
    config = load_config(
        FetcherConfig, {"APKFARM_FETCH_PRIVATE_NETWORKS": "10.20.0.0/16, fd00:1::/64"}
    )
    assert config.destinations() == DestinationPolicy(
        (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("fd00:1::/64"))
    )


@pytest.mark.parametrize(
    ("env", "value", "complaint"),
    [
        ("APKFARM_SOURCE_SITES", "EXAMPLES_SITE", "APKFARM_SOURCE_SITES: .*NAME=URL"),
        ("APKFARM_SOURCE_SITES", "X_SITE=ftp://127.0.0.1/", "APKFARM_SOURCE_SITES"),
        ("APKFARM_FETCH_MAX_BYTES", "0", "APKFARM_FETCH_MAX_BYTES must be at least 1"),
        ("APKFARM_FETCH_PER_HOST", "0", "APKFARM_FETCH_PER_HOST"),
        ("APKFARM_FETCH_TIMEOUT", "0", "APKFARM_FETCH_TIMEOUT must be a positive"),
        ("APKFARM_FETCH_CONCURRENCY", "5000", "APKFARM_FETCH_CONCURRENCY"),
        ("APKFARM_FETCH_PRIVATE_NETWORKS", "10.0.0.0/33", "APKFARM_FETCH_PRIVATE_NETWORKS: '10"),
        ("APKFARM_FETCH_PRIVATE_NETWORKS", "intranet", "APKFARM_FETCH_PRIVATE_NETWORKS"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(env: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_config(FetcherConfig, {env: value})


def test_a_bad_setting_stops_the_command_before_it_connects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APKFARM_SOURCE_SITES", "GNU_SITE=https://user:pw@127.0.0.1/gnu")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "apkfarm-fetcher: error: APKFARM_SOURCE_SITES" in err
    assert "credentials" in err and "pw@" not in err
