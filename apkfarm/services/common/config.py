"""Twelve-factor configuration: typed dataclasses filled from environment variables.

A service declares its settings once, as dataclass fields made with
:func:`setting`; the same declaration fills the values from the environment,
renders the ``--help`` text, and masks secrets wherever the config is shown.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apkfarm.errors import ApkfarmError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ApkfarmError):
    """An environment variable holds a value its setting cannot take."""


def setting(env: str, default: Any, help: str, *, secret: bool = False) -> Any:
    """A config field read from ``env``; ``secret`` values are never shown."""
    metadata = {"env": env, "help": help, "secret": secret}
    if isinstance(default, list | dict | set):
        raise TypeError("mutable defaults: use a tuple")
    # repr=False keeps secrets out of tracebacks and debug logs of the config object.
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


def _convert(name: str, raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if kind is str:
        return raw
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{name}: expected a boolean (true/false), got {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if kind is Path:
        return Path(raw)
    if origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if origin is typing.Union or origin is types.UnionType:
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if raw == "":
            return None
        return _convert(name, raw, inner[0])
    raise TypeError(f"unsupported setting type {kind!r} for {name}")


def load_config[C](cls: type[C], environ: Mapping[str, str]) -> C:
    """Build ``cls`` from ``environ``; unset variables keep their defaults."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        env = field.metadata.get("env")
        if env is None or env not in environ:
            continue
        values[field.name] = _convert(env, environ[env], hints[field.name])
    return cls(**values)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if value is None:
        return ""
    return str(value)


def config_help(cls: type[Any]) -> str:
    """The environment variables of ``cls`` with their defaults, for ``--help``."""
    lines = ["environment variables:"]
    for field in dataclasses.fields(cls):
        env = field.metadata.get("env")
        if env is None:
            continue
        default = "(secret)" if field.metadata["secret"] else repr(_shown(field.default))
        lines.append(f"  {env:<34} {field.metadata['help']} [default: {default}]")
    return "\n".join(lines)


def describe_config(config: Any) -> dict[str, str]:
    """The effective configuration with secrets masked, safe to log."""
    shown: dict[str, str] = {}
    for field in dataclasses.fields(config):
        env = field.metadata.get("env")
        if env is None:
            continue
        value = getattr(config, field.name)
        secret = field.metadata["secret"] and value not in (None, "")
        shown[env] = "***" if secret else _shown(value)
    return shown
