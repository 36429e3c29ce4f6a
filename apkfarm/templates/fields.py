"""The vocabulary of a cports template: fields, options, hooks, build styles.

These tables state cbuild's rules as data. The evaluation worker receives
them as JSON (``worker_spec()``), so the rules live in one place.

Field attributes, as in cbuild:

* ``types``: the Python types a value may have (``comp`` is a compression
  spec such as ``zstd:19``);
* ``mandatory``: the template must set it;
* ``subpkg``: a subpackage function may set it too;
* ``inherit``: a subpackage starts with the template's value (otherwise with
  the default).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "AUTOPKGS",
    "BUILD_STYLES",
    "DEPENDENCY_FIELDS",
    "FIELDS",
    "FIELDS_BY_NAME",
    "HARDENING",
    "OPTIONS",
    "PHASES",
    "SUBPACKAGE_INSTALLERS",
    "Field",
    "Option",
    "hook_phase",
    "inherited_options",
    "resolve_options",
    "spec_digest",
    "worker_spec",
]


@dataclass(frozen=True)
class Field:
    name: str
    default: Any
    types: tuple[str, ...]
    mandatory: bool = False
    subpkg: bool = False
    inherit: bool = False


def _f(
    name: str,
    default: Any,
    types: str | tuple[str, ...],
    *,
    mandatory: bool = False,
    subpkg: bool = False,
    inherit: bool = False,
) -> Field:
    return Field(
        name, default, (types,) if isinstance(types, str) else types, mandatory, subpkg, inherit
    )


# Order matters only for messages: mandatory fields are checked first.
FIELDS: tuple[Field, ...] = (
    _f("license", None, "str", mandatory=True, subpkg=True, inherit=True),
    _f("pkgdesc", None, "str", mandatory=True, subpkg=True, inherit=True),
    _f("pkgname", None, "str", mandatory=True),
    _f("pkgrel", None, "int", mandatory=True),
    _f("pkgver", None, "str", mandatory=True),
    _f("url", None, "str", mandatory=True),
    _f("options", [], "list", subpkg=True),
    _f("broken", None, "str"),
    _f("restricted", None, "str"),
    _f("build_style", None, "str"),
    _f("sha256", [], ("list", "str")),
    _f("source", [], ("list", "str")),
    _f("source_headers", None, ("list", "dict")),
    _f("source_paths", None, "list"),
    _f("archs", None, "list"),
    _f("build_wrksrc", "", "str"),
    _f("prepare_after_patch", False, "bool"),
    _f("checkdepends", [], "list"),
    _f("hostmakedepends", [], "list"),
    _f("makedepends", [], "list"),
    _f("depends", [], "list", subpkg=True),
    _f("provides", [], "list", subpkg=True),
    _f("provider_priority", 0, "int", subpkg=True, inherit=True),
    _f("renames", [], "list", subpkg=True),
    _f("replaces", [], "list", subpkg=True),
    _f("replaces_priority", 0, "int", subpkg=True, inherit=True),
    _f("install_if", [], "list", subpkg=True),
    _f("ignore_shlibs", [], "list", subpkg=True),
    _f("configure_args", [], "list"),
    _f("configure_script", "configure", "str"),
    _f("configure_env", {}, "dict"),
    _f("configure_gen", [], "list"),
    _f("make_cmd", "make", "str"),
    _f("make_dir", ".", "str"),
    _f("make_env", {}, "dict"),
    _f("make_wrapper", [], "list"),
    _f("make_build_args", [], "list"),
    _f("make_install_args", [], "list"),
    _f("make_check_args", [], "list"),
    _f("make_build_target", "", "str"),
    _f("make_install_target", "install", "str"),
    _f("make_check_target", "check", "str"),
    _f("make_build_env", {}, "dict"),
    _f("make_install_env", {}, "dict"),
    _f("make_check_env", {}, "dict"),
    _f("make_build_wrapper", [], "list"),
    _f("make_install_wrapper", [], "list"),
    _f("make_check_wrapper", [], "list"),
    _f("protected_paths", [], "list", subpkg=True),
    _f("nostrip_files", [], "list", subpkg=True),
    _f("hardening", [], "list", subpkg=True),
    _f("nopie_files", [], "list", subpkg=True),
    _f("tools", {}, "dict"),
    _f("tool_flags", {}, "dict"),
    _f("env", {}, "dict"),
    _f("debug_level", -1, "int"),
    _f("subdesc", "", "str", subpkg=True),
    _f("origin", None, "str", subpkg=True, inherit=True),
    _f("triggers", [], "list", subpkg=True),
    _f("file_modes", {}, "dict", subpkg=True),
    _f("file_xattrs", {}, "dict", subpkg=True),
    _f("broken_symlinks", [], "list", subpkg=True),
    _f("skip_providers", [], "list", subpkg=True),
    _f("skip_dependencies", [], "list", subpkg=True),
    _f("compression", None, "comp", subpkg=True, inherit=True),
    _f("exec_wrappers", [], "list"),
    _f("cmake_dir", None, "str"),
    _f("make_use_env", False, "bool"),
    _f("meson_dir", ".", "str"),
    _f("go_mod_dl", None, "str"),
    _f("go_build_tags", [], "list"),
    _f("go_check_tags", [], "list"),
)

FIELDS_BY_NAME: Mapping[str, Field] = {f.name: f for f in FIELDS}

DEPENDENCY_FIELDS: tuple[str, ...] = ("hostmakedepends", "makedepends", "checkdepends", "depends")


@dataclass(frozen=True)
class Option:
    name: str
    default: bool
    # Global options apply to the whole build; subpackages inherit their value.
    inherit: bool


OPTIONS: Mapping[str, Option] = {
    o.name: o
    for o in (
        Option("bootstrap", False, True),
        Option("checkroot", False, True),
        Option("installroot", True, True),
        Option("keepempty", False, False),
        Option("keeplibtool", False, False),
        Option("brokenlinks", False, False),
        Option("hardlinks", False, False),
        Option("autosplit", True, False),
        Option("lintcomp", True, False),
        Option("lintstatic", True, False),
        Option("lintpixmaps", True, False),
        Option("etcfiles", False, False),
        Option("distlicense", True, False),
        Option("empty", False, False),
        Option("splitstatic", False, False),  # true by default for -devel packages
        Option("splitudev", True, False),
        Option("splitdinit", True, False),
        Option("splitdoc", True, False),
        Option("scantrigdeps", True, False),
        Option("scanrundeps", True, False),
        Option("scanshlibs", True, False),
        Option("scanpkgconf", True, False),
        Option("scanservices", True, False),
        Option("scandevelif", True, False),
        Option("scancmd", True, False),
        Option("textrels", False, False),
        Option("execstack", False, False),
        Option("foreignelf", False, False),
        Option("parallel", True, True),
        Option("ci", True, True),
        Option("eepy", False, True),
        Option("debug", True, True),
        Option("strip", True, False),
        Option("check", True, True),
        Option("cross", True, True),
        Option("lint", True, True),
        Option("spdx", True, False),
        Option("relr", True, True),
        Option("lto", True, True),
        Option("ltofull", False, True),
        Option("ltostrip", False, False),
        Option("linkparallel", True, True),
        Option("linkundefver", False, False),
        Option("linkrelax", True, False),
        Option("framepointer", True, True),
        Option("fullrustflags", False, True),
        Option("sanruntime", False, True),
    )
}

# Hardening switches (cbuild's profile.hardening_fields) and their defaults.
HARDENING: Mapping[str, bool] = {
    "vis": False,
    "cfi": False,
    "bti": False,
    "pac": False,
    "cet": False,
    "sst": False,
    "pie": True,
    "ssp": True,
    "scp": True,
    "int": True,
    "format": True,
    "var-init": True,
}

# Build phases a template may hook: `install`, `pre_install`, `post_install`,
# `init_install`; `do_install` is the older spelling of `install`.
PHASES: tuple[str, ...] = (
    "fetch",
    "extract",
    "prepare",
    "patch",
    "configure",
    "build",
    "check",
    "install",
)

BUILD_STYLES: frozenset[str] = frozenset(
    {
        "cargo",
        "cmake",
        "configure",
        "gnu_configure",
        "go",
        "linux_kernel",
        "makefile",
        "meson",
        "meta",
        "perl_module",
        "python_pep517",
        "qmake6",
        "ruby_gem",
        "u_boot",
        "waf",
        "zig_build",
        "zig_package",
    }
)

# Automatic subpackages: (suffix, description, install_if companion). A companion
# starting with "-" names a sibling (foo-dinit-links installs with foo-dinit).
# A declared subpackage with one of these suffixes gets the same defaults.
AUTOPKGS: tuple[tuple[str, str, str | None], ...] = (
    ("dbg", "debug files", None),
    ("static", "static libraries", "base-devel-static"),
    ("doc", "documentation", "base-doc"),
    ("man", "manual pages", "base-man"),
    ("dinit-links", "service links", "-dinit"),
    ("dinit", "service files", "dinit-chimera"),
    ("initramfs-tools", "initramfs scripts", "initramfs-tools"),
    ("udev", "udev rules", "udev-meta"),
    ("bashcomp", "bash completions", "bash-completion"),
    ("zshcomp", "zsh completions", "zsh"),
    ("fishcomp", "fish completions", "fish-shell"),
    ("nucomp", "nu completions", "nushell"),
    ("locale", "locale data", "base-locale"),
    ("pycache", "Python bytecode", "python-pycache"),
)

# What `self.default_*()` in a subpackage function stands for, with cbuild's
# default arguments. The builder interprets the recorded marker later.
SUBPACKAGE_INSTALLERS: Mapping[str, Mapping[str, Any]] = {
    "default_devel": {"man": "23", "extra": None},
    "default_static": {"extra": None},
    "default_doc": {"extra": None},
    "default_libs": {"extra": None},
    "default_progs": {"man": "18", "extra": None},
}

# Suffix-based subdescriptions cbuild gives declared subpackages.
SUBDESC_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("-devel", "development files"),
    ("-libs", "libraries"),
    ("-progs", "programs"),
)


def hook_phase(name: str) -> str | None:
    """The phase a module-level function name hooks, or None if it is no hook."""
    for prefix in ("pre_", "post_", "init_", "do_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name if name in PHASES else None


def resolve_options(
    written: Sequence[str], pkgname: str, parent: Mapping[str, bool] | None = None
) -> tuple[Mapping[str, bool], list[str]]:
    """cbuild's option dictionary for a package (read-only), and the unknown names written.

    A subpackage (`parent` given) inherits the parent's value of global
    options and starts from the default for per-package ones.
    """
    if parent is None:
        options, unknown = _top_level_options(tuple(written), pkgname.endswith("-devel"))
        return options, list(unknown)
    return _options(written, pkgname, parent)


def inherited_options(
    parent_written: Sequence[str], parent_pkgname: str, pkgname: str
) -> Mapping[str, bool]:
    """``resolve_options((), pkgname, parent)`` for a subpackage that writes no options,
    where ``parent`` is what `parent_written` resolves to for `parent_pkgname`.

    The same answer without building a key from the parent's whole option
    dictionary: templates share few distinct option lists.
    """
    return _subpackage_options(
        tuple(parent_written), parent_pkgname.endswith("-devel"), pkgname.endswith("-devel")
    )


@functools.lru_cache(maxsize=4096)
def _subpackage_options(
    parent_written: tuple[str, ...], parent_devel: bool, devel: bool
) -> Mapping[str, bool]:
    parent, _ = _top_level_options(parent_written, parent_devel)
    return _options((), "x-devel" if devel else "x", parent)[0]


@functools.lru_cache(maxsize=4096)
def _top_level_options(
    written: tuple[str, ...], devel: bool
) -> tuple[Mapping[str, bool], tuple[str, ...]]:
    # Templates share few distinct option lists: resolve each once.
    options, unknown = _options(written, "x-devel" if devel else "x", None)
    return options, tuple(unknown)


def _options(
    written: Sequence[str], pkgname: str, parent: Mapping[str, bool] | None
) -> tuple[Mapping[str, bool], list[str]]:
    options: dict[str, bool] = {}
    for option in OPTIONS.values():
        if parent is not None and option.inherit:
            options[option.name] = parent[option.name]
        else:
            options[option.name] = option.default
    if pkgname.endswith("-devel"):
        options["splitstatic"] = True
    unknown: list[str] = []
    for entry in written:
        negated = entry.startswith("!")
        name = entry[1:] if negated else entry
        if name not in options:
            unknown.append(name)
            continue
        options[name] = not negated
    return MappingProxyType(options), unknown


def worker_spec() -> dict[str, Any]:
    """The tables the evaluation worker needs, as JSON-ready data."""
    return {
        "fields": [
            {
                "name": f.name,
                "default": f.default,
                "types": list(f.types),
                "mandatory": f.mandatory,
                "subpkg": f.subpkg,
                "inherit": f.inherit,
            }
            for f in FIELDS
        ],
        "options": {o.name: [o.default, o.inherit] for o in OPTIONS.values()},
        "phases": list(PHASES),
        "autopkgs": [list(a) for a in AUTOPKGS],
        "subdesc_suffixes": [list(s) for s in SUBDESC_SUFFIXES],
        "installers": {k: dict(v) for k, v in SUBPACKAGE_INSTALLERS.items()},
        "dependency_fields": list(DEPENDENCY_FIELDS),
    }


def spec_digest() -> str:
    """A digest of worker_spec(); part of every evaluation's cache key."""
    return hashlib.sha256(json.dumps(worker_spec(), sort_keys=True).encode()).hexdigest()
