"""What a loaded template is: plain, immutable data the builder and scheduler use.

A ``Template`` is one ``<category>/<pkgname>/template.py`` evaluated for one
build context (target arch, host arch, stage) and accepted by cbuild's
load-time rules. ``fields`` holds every cports field with defaults filled in;
the dependency lists are kept exactly as written (``cmd:awk!base-files``,
``foo>=1.2``), with package objects already rendered as ``name=ver-rN``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from apkfarm.templates.fields import AUTOPKGS

__all__ = ["CustomTarget", "Subpackage", "Template", "TemplateIssue"]


@dataclass(frozen=True)
class TemplateIssue:
    """One problem with one template (``main/foo``) or tree entry, for people."""

    template: str
    message: str

    def __str__(self) -> str:
        return f"{self.template}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"template": self.template, "message": self.message}


@dataclass(frozen=True)
class CustomTarget:
    name: str
    after: str | None


_SEQUENCES = (list, tuple)  # not `list | tuple`: that builds a union object per call


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, _SEQUENCES):
        return tuple(map(str, value)) if value else ()
    if isinstance(value, str):
        return (value,)
    return ()


def _derived(
    category: str, pkgname: str, pkgver: str, pkgrel: int, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """A Template's attributes that follow from its fields."""
    get = fields.get
    return {
        "full_name": f"{category}/{pkgname}",
        "version": f"{pkgver}-r{pkgrel}",
        "hostmakedepends": _strings(get("hostmakedepends")),
        "makedepends": _strings(get("makedepends")),
        "checkdepends": _strings(get("checkdepends")),
        "depends": _strings(get("depends")),
        "provides": _strings(get("provides")),
    }


@dataclass(frozen=True)
class Subpackage:
    """A ``@subpackage`` of a template, as its function left it.

    ``install`` is what the function returned: ``{"kind": "paths", "paths":
    [...]}`` for a list, ``{"kind": "default_devel", "man": "23", "extra":
    None}`` (and ``default_doc``/``default_libs``/``default_progs``/
    ``default_static``) for cbuild's helpers, ``{"kind": "function"}`` for a
    custom function the builder runs by re-evaluating the template.
    """

    name: str
    declared: str
    alternative: str | None
    install: Mapping[str, Any]
    fields: Mapping[str, Any]
    options: Mapping[str, bool]

    depends: tuple[str, ...] = field(init=False, repr=False, compare=False)
    provides: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.__dict__.update(
            depends=_strings(self.fields.get("depends")),
            provides=_strings(self.fields.get("provides")),
        )

    @classmethod
    def assemble(
        cls,
        *,
        name: str,
        declared: str,
        alternative: str | None,
        install: Mapping[str, Any],
        fields: Mapping[str, Any],
        options: Mapping[str, bool],
    ) -> Subpackage:
        """``Subpackage(...)`` for the loader's hot path (see ``Template.assemble``)."""
        subpackage = object.__new__(cls)
        subpackage.__dict__.update(
            name=name,
            declared=declared,
            alternative=alternative,
            install=install,
            fields=fields,
            options=options,
            depends=_strings(fields.get("depends")),
            provides=_strings(fields.get("provides")),
        )
        return subpackage

    @property
    def install_if(self) -> tuple[str, ...]:
        return _strings(self.fields.get("install_if"))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "declared": self.declared,
            "alternative": self.alternative,
            "install": dict(self.install),
            "fields": dict(self.fields),
        }


@dataclass(frozen=True)
class Template:
    """One template evaluated for one build context.

    ``excluded`` is None when the template may build for the context, or the
    reason it may not (broken, archs, ``!cross``, restricted, category);
    ``written_options`` is the ``options`` list as written, ``options`` the
    resolved switches.
    """

    category: str
    pkgname: str
    pkgver: str
    pkgrel: int
    fields: Mapping[str, Any]
    options: Mapping[str, bool]
    subpackages: tuple[Subpackage, ...]
    all_subpackages: tuple[str, ...]
    hooks: tuple[str, ...]
    custom_targets: tuple[CustomTarget, ...] = ()
    excluded: str | None = None
    log: tuple[str, ...] = ()
    digest: str = ""  # sha256 of template.py
    key: str = ""  # the evaluation's cache key
    repositories: tuple[str, ...] = field(default=())  # category, then its .parent chain

    # Derived once at construction: the graph reads these for every template
    # on every re-plan.
    full_name: str = field(init=False, repr=False, compare=False)
    version: str = field(init=False, repr=False, compare=False)  # pkgver-rN as apk writes it
    hostmakedepends: tuple[str, ...] = field(init=False, repr=False, compare=False)
    makedepends: tuple[str, ...] = field(init=False, repr=False, compare=False)
    checkdepends: tuple[str, ...] = field(init=False, repr=False, compare=False)
    depends: tuple[str, ...] = field(init=False, repr=False, compare=False)
    provides: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.__dict__.update(
            _derived(self.category, self.pkgname, self.pkgver, self.pkgrel, self.fields)
        )

    @classmethod
    def assemble(
        cls,
        *,
        category: str,
        pkgname: str,
        pkgver: str,
        pkgrel: int,
        fields: Mapping[str, Any],
        options: Mapping[str, bool],
        subpackages: tuple[Subpackage, ...],
        all_subpackages: tuple[str, ...],
        hooks: tuple[str, ...],
        custom_targets: tuple[CustomTarget, ...],
        excluded: str | None,
        log: tuple[str, ...],
        digest: str,
        key: str,
        repositories: tuple[str, ...],
    ) -> Template:
        """``Template(...)`` with every argument given, for the loader's hot path.

        The same object, made without the frozen dataclass's ``__init__``
        (one ``object.__setattr__`` per field): a load makes thousands.
        """
        template = object.__new__(cls)
        template.__dict__.update(
            category=category,
            pkgname=pkgname,
            pkgver=pkgver,
            pkgrel=pkgrel,
            fields=fields,
            options=options,
            subpackages=subpackages,
            all_subpackages=all_subpackages,
            hooks=hooks,
            custom_targets=custom_targets,
            excluded=excluded,
            log=log,
            digest=digest,
            key=key,
            repositories=repositories,
            **_derived(category, pkgname, pkgver, pkgrel, fields),
        )
        return template

    @property
    def archs(self) -> tuple[str, ...] | None:
        value = self.fields.get("archs")
        return None if value is None else _strings(value)

    @property
    def broken(self) -> str | None:
        value = self.fields.get("broken")
        return value if isinstance(value, str) else None

    @property
    def written_options(self) -> tuple[str, ...]:
        return _strings(self.fields.get("options"))

    @cached_property
    def package_names(self) -> tuple[str, ...]:
        """The packages this template builds: itself, then its subpackages."""
        return (self.pkgname, *(s.name for s in self.subpackages))

    @property
    def possible_packages(self) -> tuple[str, ...]:
        """Every package a build may produce: the declared ones and their automatic splits.

        Automatic subpackages (``foo-man``, ``foo-doc``, ...) appear only when the
        build installs such files, so a job may sign any of them but need not.
        """
        declared = self.package_names
        autos = tuple(f"{name}-{suffix}" for name in declared for suffix, _, _ in AUTOPKGS)
        return (*declared, *(a for a in autos if a not in declared))

    def to_json(self) -> dict[str, Any]:
        """The shape ``apkfarm templates dump`` prints for one template."""
        return {
            "name": self.full_name,
            "category": self.category,
            "pkgname": self.pkgname,
            "pkgver": self.pkgver,
            "pkgrel": self.pkgrel,
            "version": self.version,
            "subpackages": [s.name for s in self.subpackages],
            "hostmakedepends": list(self.hostmakedepends),
            "makedepends": list(self.makedepends),
            "checkdepends": list(self.checkdepends),
            "depends": list(self.depends),
            "provides": list(self.provides),
            "archs": None if self.archs is None else list(self.archs),
            "options": list(self.written_options),
            "broken": self.broken,
            "excluded": self.excluded,
            "build_style": self.fields.get("build_style"),
            "hooks": list(self.hooks),
            "subpackage_details": [s.to_json() for s in self.subpackages],
            "custom_targets": [{"name": t.name, "after": t.after} for t in self.custom_targets],
            "fields": dict(self.fields),
            "digest": self.digest,
        }
