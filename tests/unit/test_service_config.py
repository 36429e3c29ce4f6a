from dataclasses import dataclass
from pathlib import Path

import pytest

from apkfarm.services.common.config import (
    ConfigError,
    config_help,
    describe_config,
    load_config,
    setting,
)


@dataclass(frozen=True)
class ExampleConfig:
    listen: str = setting("EXAMPLE_LISTEN", "127.0.0.1:0", "gRPC address")
    workers: int = setting("EXAMPLE_WORKERS", 2, "parallel jobs")
    verbose: bool = setting("EXAMPLE_VERBOSE", False, "log more")
    state_dir: Path = setting("EXAMPLE_STATE_DIR", Path("/var/lib/x"), "state")
    archs: tuple[str, ...] = setting("EXAMPLE_ARCHS", ("x86_64",), "architectures")
    password: str = setting("EXAMPLE_PASSWORD", "", "broker password", secret=True)
    timeout: float | None = setting("EXAMPLE_TIMEOUT", None, "seconds")


def test_defaults_when_environment_is_empty() -> None:
    config = load_config(ExampleConfig, {})
    assert config == ExampleConfig()


def test_values_are_converted_to_the_declared_types() -> None:
    config = load_config(
        ExampleConfig,
        {
            "EXAMPLE_WORKERS": "8",
            "EXAMPLE_VERBOSE": "yes",
            "EXAMPLE_STATE_DIR": "/srv/state",
            "EXAMPLE_ARCHS": "x86_64, aarch64,",
            "EXAMPLE_TIMEOUT": "2.5",
        },
    )
    assert config.workers == 8
    assert config.verbose is True
    assert config.state_dir == Path("/srv/state")
    assert config.archs == ("x86_64", "aarch64")
    assert config.timeout == 2.5


@pytest.mark.parametrize(
    ("env", "value"), [("EXAMPLE_WORKERS", "many"), ("EXAMPLE_VERBOSE", "perhaps")]
)
def test_bad_values_name_the_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        load_config(ExampleConfig, {env: value})


def test_secrets_never_appear_in_help_repr_or_description() -> None:
    config = load_config(ExampleConfig, {"EXAMPLE_PASSWORD": "hunter2"})
    assert config.password == "hunter2"
    assert "hunter2" not in repr(config)
    assert describe_config(config)["EXAMPLE_PASSWORD"] == "***"
    help_text = config_help(ExampleConfig)
    assert "EXAMPLE_PASSWORD" in help_text
    assert "EXAMPLE_LISTEN" in help_text
    assert "'127.0.0.1:0'" in help_text
