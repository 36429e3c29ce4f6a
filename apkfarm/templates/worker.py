"""Template evaluation worker: executes cports templates inside the sandbox.

This file is a program of its own, run as ``python -I -S worker.py`` inside
bwrap; it imports only the standard library and nothing from apkfarm, so
that only the Python runtime has to be bound into the sandbox.

Protocol. The parent writes messages to our stdin as marshal data (format
4) after their length (4 bytes, big-endian): the parent is trusted, and
marshal passes the template sources for a fraction of JSON's cost. We answer
with JSON objects, one per line: the parent only ever parses data from a
worker, where template code runs.

* ``{"op": "init", "spec": {...}}`` once: the field and option tables
  (``apkfarm.templates.fields.worker_spec()``); we answer ``{"op": "ready"}``;
* ``{"op": "batch", "context": {...}, "items": [...]}``: templates to
  evaluate for one build context; we answer one line per item, in order,
  each carrying the item's ``id``, then ``{"op": "done", "cpu": seconds}``
  (the CPU time this worker has used so far);
* ``{"op": "exit"}``: we exit.

The whole batch is read before any template runs, so template code finds
nothing pending on the input. File descriptors 0 and 1 are pointed at
/dev/null while templates run; the protocol uses private copies.

What a template evaluates to is plain data: the fields it set, its
subpackages (what each subpackage function set and returned), the names of
its hook functions (never run here) and the problems cbuild would refuse it
for at load time; lists that are empty are left out. Content rules
(pkgdesc, url, versions, archs, ...) are applied by the parent on this data.
"""

from __future__ import annotations

import builtins
import marshal
import os
import resource
import sys

# Every worker imports this module afresh, and start-up is part of a cold
# load: pathlib and traceback are imported only when used, typing never.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable, Iterator
    from typing import IO, Any

    JSONDict = dict[str, Any]

PROTOCOL = 1
MAX_RESULT_BYTES = 8 << 20
MOUNT = "/ports"  # where the ports tree is bound inside the sandbox


def _json_encoder() -> Callable[[Any], str]:
    """What ``json.JSONEncoder(separators=(",", ":"), check_circular=False).encode`` is.

    Built from the C encoder that class uses: importing the json package
    (and with it re and enum) would be a third of a worker's start-up, which
    every cold load pays. One encoder serves every message; results are
    fresh trees of plain data (_to_data), so there is no cycle check. Where
    the C encoder is missing or behaves otherwise, the json package it is.
    """

    def unsupported(value: Any) -> Any:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    try:
        from _json import encode_basestring_ascii, make_encoder  # noqa: PLC0415

        encoder = make_encoder(
            None, unsupported, encode_basestring_ascii, None, ":", ",", False, False, True
        )

        def encode(value: Any) -> str:
            return "".join(encoder(value, 0))

        if encode({"a": [1, "\xe9\n", None, True, 1.5]}) == '{"a":[1,"\\u00e9\\n",null,true,1.5]}':
            return encode
    except (ImportError, TypeError, ValueError):
        pass
    import json  # noqa: PLC0415

    return json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


_dumps = _json_encoder()
_write = os.write

_UNSET = object()


class TemplateError(Exception):
    """A refusal for people: raised by ``self.error()`` and by cbuild's rules."""


# --- the spec the parent sends ----------------------------------------------------


class Spec:
    def __init__(self, data: JSONDict) -> None:
        self.fields: list[JSONDict] = data["fields"]
        self.by_name: dict[str, JSONDict] = {f["name"]: f for f in self.fields}
        self.defaults: dict[str, Any] = {f["name"]: f["default"] for f in self.fields}
        self.subpkg_fields: list[JSONDict] = [f for f in self.fields if f["subpkg"]]
        self.subpkg_defaults: dict[str, Any] = {
            f["name"]: f["default"] for f in self.subpkg_fields if not f["inherit"]
        }
        self.inherited: frozenset[str] = frozenset(
            f["name"] for f in self.subpkg_fields if f["inherit"]
        )
        # Python types per field; None for the "comp" pseudo-type.
        self.types: dict[str, tuple[type, ...] | None] = {
            f["name"]: None if f["types"] == ["comp"] else tuple(_TYPES[t] for t in f["types"])
            for f in self.fields
        }
        self.options: dict[str, list[bool]] = data["options"]
        self.default_options: dict[str, bool] = {
            name: default for name, (default, _) in self.options.items()
        }
        self.phases: frozenset[str] = frozenset(data["phases"])
        self.autopkgs: list[list[Any]] = data["autopkgs"]
        self.subdesc_suffixes: list[list[str]] = data["subdesc_suffixes"]
        self.installers: dict[str, JSONDict] = data["installers"]


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


_TYPES: dict[str, type] = {"str": str, "int": int, "list": list, "dict": dict, "bool": bool}


def _valid_compression(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    parts = value.split(":")
    if len(parts) > 2:
        return False
    if parts[0] == "none":
        return len(parts) == 1
    if parts[0] not in ("deflate", "zstd"):
        return False
    if len(parts) == 2:
        try:
            level = int(parts[1])
        except ValueError:
            return False
        return 0 <= level <= (9 if parts[0] == "deflate" else 22)
    return True


def _type_problem(name: str, value: Any, types: tuple[type, ...] | None) -> str | None:
    """cbuild's validate_type: the message for a wrongly typed field, or None."""
    if types is None:
        if _valid_compression(value):
            return None
        return f"invalid value for field {name} (expected a compression spec, got {value!r})"
    if isinstance(value, types):
        return None
    return (
        f"invalid value for field {name} "
        f"(expected '{types[0].__name__}' but got '{type(value).__name__}')"
    )


# --- what templates see -------------------------------------------------------------


class Profile:
    """cbuild's profile: ``self.profile.arch`` and ``self.profile().arch`` both work.

    Read-only, so that one template cannot change what the next one sees.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__:
            raise AttributeError(f"profile attribute {name!r} is read-only")
        super().__setattr__(name, value)

    def __init__(self, data: JSONDict, cross: bool) -> None:
        self.arch: str = data["arch"]
        self.machine: str = data["machine"]
        self.triplet: str = data["triplet"]
        self.endian: str = data["endian"]
        self.wordsize: int = data["wordsize"]
        self.goarch: str | None = data["goarch"]
        self.goarm: str | None = data["goarm"]
        self.repos: list[str] = list(data["repos"])
        self.data = data
        self.cross = cross

    @property
    def sysroot(self) -> pathlib.Path:
        import pathlib  # noqa: PLC0415 - only for templates that ask

        return pathlib.Path("/usr") / self.triplet if self.cross else pathlib.Path("/")

    def __call__(self) -> Profile:
        return self

    def __repr__(self) -> str:
        return f"<profile {self.arch}>"


class Package:
    """What templates and subpackages have in common (cbuild's Package)."""

    pkgname: str
    _log: list[str]

    def _version(self) -> tuple[Any, Any]:
        raise NotImplementedError

    @property
    def full_pkgver(self) -> str | None:
        pkgver, pkgrel = self._version()
        if not pkgver or pkgrel is None:
            return None
        return f"{pkgver}-r{pkgrel}"

    @property
    def pkgname_ver(self) -> str:
        return f"{self.pkgname}={self.full_pkgver}"

    def with_pkgver(self, name: str) -> str:
        return f"{name}={self.full_pkgver}"

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        raise TemplateError(str(msg))

    def log(self, msg: str, end: str = "\n") -> None:
        self._log.append(str(msg))

    def log_warn(self, msg: str, end: str = "\n") -> None:
        self._log.append(f"WARNING: {msg}")

    log_red = log
    log_green = log


class Template(Package):
    """``self`` at the top level of a template and ``self.parent`` in subpackages."""

    # Every cports field is an attribute too (set from the spec's table).
    options: Any
    origin: Any

    def __init__(
        self,
        spec: Spec,
        item: JSONDict,
        context: Context,
        namespace: dict[str, Any],
    ) -> None:
        self._spec = spec
        self._namespace = namespace
        self._executing = True
        self._log = []
        self.pkgname = item["name"]
        self.repository: str = item["category"]
        self.full_pkgname = f"{self.repository}/{self.pkgname}"
        self.source_repositories: list[str] = list(item["repositories"])
        self.stage: int = context.stage
        self.parent: Package | None = None
        self.rparent: Template = self
        self._target = context.target
        self._host = context.host

    def __getattr__(self, name: str) -> Any:
        # Fields start at their defaults (a fresh copy, kept, so that
        # ``self.depends.append()`` sticks), as in cbuild.
        defaults = self.__dict__["_spec"].defaults
        if name not in defaults:
            raise AttributeError(name)
        value = _copy(defaults[name])
        self.__dict__[name] = value
        return value

    @property
    def template_path(self) -> pathlib.Path:
        import pathlib  # noqa: PLC0415 - only for templates that ask

        return pathlib.Path(MOUNT) / self.repository / self.pkgname

    @property
    def files_path(self) -> pathlib.Path:
        return self.template_path / "files"

    @property
    def patches_path(self) -> pathlib.Path:
        return self.template_path / "patches"

    # pkgver/pkgrel read what the template has assigned so far, so that
    # ``self.with_pkgver()`` works at the top level as it does in cbuild.
    def _version(self) -> tuple[Any, Any]:
        if self._executing:
            return self._namespace.get("pkgver"), self._namespace.get("pkgrel")
        return self.__dict__.get("_pkgver"), self.__dict__.get("_pkgrel")

    @property
    def pkgver(self) -> Any:
        return self._version()[0]

    @pkgver.setter
    def pkgver(self, value: Any) -> None:
        self.__dict__["_pkgver"] = value

    @property
    def pkgrel(self) -> Any:
        return self._version()[1]

    @pkgrel.setter
    def pkgrel(self, value: Any) -> None:
        self.__dict__["_pkgrel"] = value

    @property
    def profile(self) -> Profile:
        return self._target

    def get_profile(self, target: str | None = None) -> Profile:
        if target in (None, "target", self._target.arch):
            return self._target
        if target in ("host", self._host.arch):
            return self._host
        if target == "target:native":
            return self._target if not self._target.cross else Profile(self._target.data, False)
        raise TemplateError(f"unknown build profile {target!r}")

    def get_data(self, key: str, default: Any = None) -> Any:
        return default

    def __repr__(self) -> str:
        return f"<template {self.full_pkgname}>"


class Context:
    """One build context, shared by every template of a batch."""

    def __init__(self, data: JSONDict) -> None:
        self.stage: int = data["stage"]
        self.target = Profile(data["target"], data["cross"])
        self.host = Profile(data["host"], False)


class Installer:
    """What ``self.default_devel()`` and friends return: a marker for the builder."""

    def __init__(self, kind: str, args: JSONDict) -> None:
        self.kind = kind
        self.args = args

    def __call__(self) -> None:
        raise TemplateError(f"{self.kind}() cannot run while a template is loaded")


class Subpackage(Package):
    """``self`` inside a ``@subpackage`` function."""

    def __init__(self, spec: Spec, name: str, parent: Template, alternative: str | None) -> None:
        self._spec = spec
        self._log = parent._log
        self.pkgname = name
        self.parent = parent
        self.rparent = parent
        self.pkgver = parent.pkgver
        self.pkgrel = parent.pkgrel
        self.build_style = getattr(parent, "build_style", None)
        self.alternative = alternative
        self.stage = parent.stage
        self._apply_suffix_defaults(parent)

    def __getattr__(self, name: str) -> Any:
        # Subpackage fields start at the default or, for inherited ones, at
        # the template's value; a fresh copy, kept, as in cbuild.
        spec = self.__dict__["_spec"]
        if name in spec.inherited:
            value = _copy(getattr(self.__dict__["parent"], name))
        elif name in spec.subpkg_defaults:
            value = _copy(spec.subpkg_defaults[name])
        else:
            raise AttributeError(name)
        self.__dict__[name] = value
        return value

    def _version(self) -> tuple[Any, Any]:
        return self.pkgver, self.pkgrel

    def _apply_suffix_defaults(self, parent: Template) -> None:
        """cbuild's defaults for names like foo-devel, foo-doc, foo-dinit."""
        name = self.pkgname
        depends: list[str] = []
        base: str | None = None
        companion: str | None = None
        for suffix, description in self._spec.subdesc_suffixes:
            if name.endswith(suffix):
                self.subdesc = description
                break
        else:
            for autopkg, description, install_if in self._spec.autopkgs:
                suffix = f"-{autopkg}"
                if name.endswith(suffix) and name != f"base{suffix}":
                    base = name.removesuffix(suffix)
                    if install_if and install_if.startswith("-"):
                        base += install_if
                        companion = name
                    else:
                        companion = install_if
                    self.subdesc = description
        if base:
            base_dep = f"{base}={parent.pkgver}-r{parent.pkgrel}"
            if not name.endswith("-man") and not name.endswith("-doc"):
                depends.append(base_dep)
            if companion:
                if companion == name:
                    self.install_if = [base_dep]
                else:
                    if companion != "python-pycache" and not companion.startswith("base-"):
                        depends.append(companion)
                    self.install_if = [base_dep, companion]
        self.depends = depends

    def _installer(self, kind: str, **args: Any) -> Installer:
        recorded = dict(self._spec.installers[kind])
        recorded.update(args)
        return Installer(kind, recorded)

    def default_devel(self, man: Any = "23", extra: Any = None) -> Installer:
        return self._installer("default_devel", man=man, extra=extra)

    def default_static(self, extra: Any = None) -> Installer:
        return self._installer("default_static", extra=extra)

    def default_doc(self, extra: Any = None) -> Installer:
        return self._installer("default_doc", extra=extra)

    def default_libs(self, extra: Any = None) -> Installer:
        return self._installer("default_libs", extra=extra)

    def default_progs(self, man: Any = "18", extra: Any = None) -> Installer:
        return self._installer("default_progs", man=man, extra=extra)

    def take(self, *args: Any, **kwargs: Any) -> None:
        raise TemplateError("take() cannot run while a template is loaded")

    take_devel = take_doc = take_libs = take_progs = take_static = take

    def __repr__(self) -> str:
        return f"<subpackage {self.pkgname}>"


# --- turning values into data ------------------------------------------------------


def _to_data(value: Any, where: str, depth: int = 0) -> Any:
    """A JSON-ready copy of `value`; package objects become ``name=ver-rN``."""
    kind = type(value)
    if kind is str or value is None or kind is int or kind is bool or kind is float:
        return value
    if kind is list and not [v for v in value if type(v) is not str]:
        return list(value)  # the common case: a list of strings
    if depth > 32:
        raise TemplateError(f"{where} is nested too deeply")
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Package):
        return value.pkgname_ver
    if isinstance(value, list | tuple):
        return [_to_data(v, where, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"{where} has a non-string key {key!r}")
            out[key] = _to_data(item, where, depth + 1)
        return out
    pathlib = sys.modules.get("pathlib")  # no path object exists unless it was imported
    if pathlib is not None and isinstance(value, pathlib.PurePath):
        return str(value)
    raise TemplateError(f"{where} holds a {type(value).__name__} value that cannot be recorded")


def _install_data(name: str, returned: Any) -> JSONDict:
    """What a subpackage function returned, as the builder will need it."""
    if isinstance(returned, list):
        for entry in returned:
            if not isinstance(entry, str):
                raise TemplateError(
                    f"subpackage '{name}' returned a list with a {type(entry).__name__}"
                    " entry (paths must be strings)"
                )
        return {"kind": "paths", "paths": list(returned)}
    if isinstance(returned, Installer):
        args = dict(returned.args)
        extra = args.get("extra")
        if extra is not None:
            if isinstance(extra, list):
                args["extra"] = _to_data(extra, f"subpackage '{name}' extra")
            elif callable(extra):
                args["extra"] = {"kind": "function"}
            else:
                raise TemplateError(f"subpackage '{name}': extra must be a list or a function")
        return {"kind": returned.kind, **_to_data(args, f"subpackage '{name}'")}
    if callable(returned):
        return {"kind": "function"}
    raise TemplateError(
        f"invalid return for subpackage '{name}' (must return a function or a list)"
    )


# --- evaluation ----------------------------------------------------------------------


def _where(error: BaseException, filename: str) -> str:
    import traceback  # noqa: PLC0415 - only when a template fails

    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == filename]
    return f" (line {lines[-1]})" if lines else ""


def _describe(error: BaseException, filename: str) -> str:
    if isinstance(error, SyntaxError) and error.filename == filename:
        return f"syntax error at line {error.lineno}: {error.msg}"
    if isinstance(error, TemplateError):
        return f"{error}{_where(error, filename)}"
    if isinstance(error, MemoryError):
        return f"ran out of memory{_where(error, filename)}"
    text = str(error)
    detail = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return f"evaluation failed{_where(error, filename)}: {detail}"


class Evaluation:
    """One template evaluated for one context."""

    def __init__(self, spec: Spec, item: JSONDict, context: Context) -> None:
        self.spec = spec
        self.item = item
        self.context = context
        self.filename = f"{MOUNT}/{item['category']}/{item['name']}/template.py"
        self.declared: list[tuple[str, Callable[..., Any], str | None, bool]] = []
        self.custom_targets: list[JSONDict] = []
        self.problems: list[str] = []

    def _subpackage(
        self, name: str, cond: Any = True, alternative: str | None = None
    ) -> Callable[[Callable[..., Any]], None]:
        def decorate(function: Callable[..., Any]) -> None:
            function_name = getattr(function, "__name__", "?")
            if function_name != "_":
                raise TemplateError(f"subpackage function '{function_name}' must be called '_'")
            self.declared.append((name, function, alternative, bool(cond)))

        return decorate

    def _custom_target(self, name: str, after: Any = None) -> Callable[[Callable[..., Any]], None]:
        def decorate(function: Callable[..., Any]) -> None:
            function_name = getattr(function, "__name__", "?")
            if function_name != "_":
                raise TemplateError(f"custom target function '{function_name}' must be called '_'")
            self.custom_targets.append(
                {"name": _to_data(name, "custom target"), "after": _to_data(after, "custom target")}
            )

        return decorate

    def run(self) -> JSONDict:
        namespace: dict[str, Any] = {"__name__": f"{self.item['category']}/{self.item['name']}"}
        template = Template(self.spec, self.item, self.context, namespace)
        self._made = (namespace, template)
        injected = dict(builtins.__dict__)
        injected.update(
            self=template, subpackage=self._subpackage, custom_target=self._custom_target
        )
        namespace["__builtins__"] = injected
        namespace["__file__"] = self.filename
        code = compile(self.item["source"], self.filename, "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - this is the sandboxed worker's one job
        template._executing = False
        return self._collect(template, namespace)

    def release(self) -> None:
        """Break the reference cycles a template's objects form (its functions and
        their globals, ``self`` and the namespace), once the result is data.

        They are freed now, by reference counting, instead of by the cyclic
        collector at some later template's expense (a worker evaluating
        templates this way never needs a collection).
        """
        made = self.__dict__.pop("_made", None)
        if made is None:
            return
        namespace, template = made
        self.declared.clear()
        try:
            namespace.clear()
            template.__dict__.clear()
        except Exception:  # noqa: S110 - what the template left behind is not our concern
            pass

    def _collect(self, template: Template, namespace: dict[str, Any]) -> JSONDict:
        spec = self.spec
        fields: JSONDict = {}
        unknown_variables: list[str] = []
        unknown_hooks: list[str] = []
        hooks: list[str] = []
        types = spec.types
        for name, value in namespace.items():
            if name.startswith("_"):
                continue
            if callable(value):
                stripped = name
                for prefix in ("pre_", "post_", "init_", "do_"):
                    if name.startswith(prefix):
                        stripped = name[len(prefix) :]
                        break
                (hooks if stripped in spec.phases else unknown_hooks).append(name)
                continue
            if name not in types:
                unknown_variables.append(name)
                continue
            # Most values have the right type and are plain: check and copy
            # those here, without the general functions' calls.
            expected = types[name]
            if expected is None or not isinstance(value, expected):
                problem = _type_problem(name, value, expected)
                if problem:
                    self.problems.append(problem)
                    continue
            setattr(template, name, value)
            kind = type(value)
            if kind is str or kind is int or kind is bool or value is None:
                fields[name] = value
            elif kind is list and not [v for v in value if type(v) is not str]:
                fields[name] = list(value)  # the most common list: plain strings
            else:
                fields[name] = _to_data(value, f"field {name}")
        template.pkgver = namespace.get("pkgver")
        template.pkgrel = namespace.get("pkgrel")
        if "origin" not in fields:
            template.origin = template.pkgname  # cbuild fills it in; subpackages inherit it
        template.options = self._options(template, template.pkgname)
        subpackages = self._subpackages(template)
        parts = {
            "unknown_variables": unknown_variables,
            "unknown_hooks": unknown_hooks,
            "hooks": hooks,
            "problems": self.problems,
            "subpackages": subpackages,
            "all_subpackages": [self._name(n, a) for n, _, a, _ in self.declared],
            "custom_targets": self.custom_targets,
            "log": template._log[:100],
        }
        # Empty lists are left out: the parent decodes every result, and most
        # of these are empty for most templates.
        return {"ok": True, "fields": fields, **{k: v for k, v in parts.items() if v}}

    def _options(self, package: Package, pkgname: str) -> dict[str, bool]:
        """The option dictionary subpackage functions read as ``self.parent.options``.

        Unknown names are ignored here; the parent reports them.
        """
        options = dict(self.spec.default_options)
        if pkgname.endswith("-devel"):
            options["splitstatic"] = True
        written = getattr(package, "options", [])
        if isinstance(written, list):
            for entry in written:
                if isinstance(entry, str):
                    negated = entry.startswith("!")
                    key = entry[1:] if negated else entry
                    if key in options:
                        options[key] = not negated
        return options

    @staticmethod
    def _name(name: str, alternative: str | None) -> str:
        if alternative:
            return f"{alternative.removeprefix('!')}-{name}-default"
        return name

    def _subpackages(self, template: Template) -> list[JSONDict]:
        result: list[JSONDict] = []
        for declared, function, alternative, active in self.declared:
            if not active:
                continue
            name = self._name(declared, alternative)
            # "!alt" names the package like "alt" but records no alternative.
            recorded = None if alternative and alternative.startswith("!") else alternative
            package = Subpackage(self.spec, name, template, recorded)
            try:
                returned = function(package)
                install = _install_data(name, returned)
            except TemplateError as error:
                raise TemplateError(f"subpackage '{name}': {error}") from error
            # Report what differs from the base the parent reconstructs (the
            # default, or the template's value for inherited fields).
            fields: JSONDict = {}
            for field in self.spec.subpkg_fields:
                field_name = field["name"]
                value = package.__dict__.get(field_name, _UNSET)
                if value is _UNSET:
                    continue
                base = getattr(template, field_name) if field["inherit"] else field["default"]
                if value == base and type(value) is type(base):
                    continue
                problem = _type_problem(field_name, value, self.spec.types[field_name])
                if problem:
                    self.problems.append(f"subpackage '{name}': {problem}")
                    continue
                fields[field_name] = _to_data(value, f"subpackage '{name}' field {field_name}")
            result.append(
                {
                    "name": name,
                    "declared": declared,
                    **({"alternative": recorded} if recorded else {}),
                    "install": install,
                    "fields": fields,
                }
            )
        return result


def evaluate(spec: Spec, item: JSONDict, context: Context) -> JSONDict:
    """Evaluate one template; never raises."""
    evaluation = Evaluation(spec, item, context)
    try:
        result = evaluation.run()
    except BaseException as error:  # the template's failure, whatever it is, is its result
        result = {"ok": False, "error": _describe(error, evaluation.filename)}
    finally:
        evaluation.release()
    result["id"] = item["id"]
    return result


# --- the loop ------------------------------------------------------------------------


def _send(fd: int, message: JSONDict) -> None:
    try:
        data = _dumps(message).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError) as error:
        data = _dumps(
            {"id": message.get("id"), "ok": False, "error": f"result cannot be recorded: {error}"}
        ).encode()
    if len(data) > MAX_RESULT_BYTES:
        data = _dumps(
            {"id": message.get("id"), "ok": False, "error": f"result too large ({len(data)} bytes)"}
        ).encode()
    data += b"\n"
    view = memoryview(data)
    while view:
        written = _write(fd, view)
        view = view[written:]


def _messages(reader: IO[bytes]) -> Iterator[JSONDict]:
    """The parent's messages, until it closes our input."""
    while len(header := reader.read(4)) == 4:
        # Written by the parent, which starts us; never by template code.
        message = marshal.loads(reader.read(int.from_bytes(header, "big")))  # noqa: S302
        if not isinstance(message, dict):
            raise TypeError(f"unexpected message {message!r:.100}")
        yield message


def main() -> int:
    protocol_in = os.dup(0)
    protocol_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    reader = os.fdopen(protocol_in, "rb")
    own_pid = os.getpid()
    spec: Spec | None = None
    for message in _messages(reader):
        op = message.get("op")
        if op == "init":
            spec = Spec(message["spec"])
            _send(protocol_out, {"op": "ready", "protocol": PROTOCOL, "pid": os.getpid()})
        elif op == "batch" and spec is not None:
            context = Context(message["context"])
            for item in message["items"]:
                result = evaluate(spec, item, context)
                if os.getpid() != own_pid:
                    os._exit(0)  # a fork the template made must never speak for us
                _send(protocol_out, result)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            _send(protocol_out, {"op": "done", "cpu": usage.ru_utime + usage.ru_stime})
        elif op == "exit":
            break
        else:
            sys.stderr.write(f"worker: unexpected message {op!r}\n")
            return 2
    return 0


if __name__ == "__main__":
    # os._exit: no atexit handlers or thread joins a template may have left behind.
    os._exit(main())
