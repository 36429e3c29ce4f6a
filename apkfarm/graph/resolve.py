"""Which template provides a dependency name, as seen from one category.

A name resolves, in cbuild's order, through the categories a template can
see (its own, then its ``.parent`` chain — ``user`` sees ``main``, never
the reverse):

1. a template or one of its subpackages of that name;
2. an automatic subpackage (``foo-man``, ``foo-dbg``, ...) of template ``foo``;
3. a ``provides`` entry of exactly one template.

Templates that did not load (errors, disallowed categories) still own their
directory name and their subpackage symlinks, so a dependency on them says
which template failed instead of "not found".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from apkfarm import version
from apkfarm.templates.fields import AUTOPKGS
from apkfarm.templates.loader import LoadResult
from apkfarm.templates.rules import dependency as parse_dependency

__all__ = ["NameIndex", "Resolution", "parse_dependency"]

_AUTOPKG_SUFFIXES = tuple(f"-{suffix}" for suffix, _, _ in AUTOPKGS)


class Resolution(NamedTuple):
    """Where a name led: a template (`template`), or why nowhere (`problem`)."""

    name: str
    template: str | None = None
    version: str | None = None  # the version the name is available at, when known
    problem: str | None = None


class _Owner(NamedTuple):
    template: str
    provided: str | None = None  # a version a provides entry states; else the template's


class NameIndex:
    """Package names and provides of a loaded tree, per category.

    The index depends on the names templates declare, not on their versions;
    ``rebind()`` points an index at a newer load whose names are the same.
    """

    def __init__(self, load: LoadResult) -> None:
        self.load = load
        self._versions: dict[str, str] = {}
        self._names: dict[str, dict[str, _Owner]] = {}
        self._inactive: dict[str, dict[str, str]] = {}
        self._provides: dict[str, dict[str, list[_Owner]]] = {}
        self._unavailable: dict[str, str] = {}  # template -> why it cannot build
        self._merged: dict[str, dict[str, _Owner]] = {}
        self._slow: dict[tuple[str, str], Resolution] = {}
        self.rebind(load)
        for name, template in load.templates.items():
            owner = _Owner(name)
            names = self._names.setdefault(template.category, {})
            for package in template.package_names:
                names[package] = owner
            inactive = self._inactive.setdefault(template.category, {})
            for declared in template.all_subpackages:
                if declared not in template.package_names:
                    inactive[declared] = name
            provides = self._provides.setdefault(template.category, {})
            for entry in (
                *template.provides,
                *(p for s in template.subpackages for p in s.provides),
            ):
                parsed = parse_dependency(entry)
                if parsed is not None:
                    provided = parsed.version if parsed.op == "=" else None
                    provides.setdefault(parsed.name, []).append(_Owner(name, provided))
            if template.excluded:
                self._unavailable[name] = f"{name} is excluded: {template.excluded}"
        failed = {issue.template: issue.message for issue in reversed(load.errors)}
        excluded = {issue.template: issue.message for issue in load.exclusions}
        # Templates that did not load keep their names (directory and symlinks).
        for category, listing in load.tree.categories.items():
            names = self._names.setdefault(category, {})
            for directory in listing.templates:
                full = f"{category}/{directory}"
                if full in load.templates:
                    continue
                if full in failed:
                    self._unavailable[full] = f"{full} failed to load: {failed[full]}"
                else:
                    why = excluded.get(full, "it did not load")
                    self._unavailable[full] = f"{full} is excluded: {why}"
                names.setdefault(directory, _Owner(full))
            for link, target in listing.symlinks.items():
                full = f"{category}/{target}"
                if full not in load.templates and target in listing.template_set:
                    names.setdefault(link, _Owner(full))

    def rebind(self, load: LoadResult) -> None:
        """Use the versions (and messages) of `load`, whose names are those indexed."""
        self.load = load
        self._versions = {name: t.version for name, t in load.templates.items()}

    def unavailable(self, template: str) -> str | None:
        """Why `template` cannot be built for this context, or None if it can."""
        return self._unavailable.get(template)

    @property
    def unavailable_templates(self) -> Mapping[str, str]:
        """template -> why it cannot be built for this context."""
        return self._unavailable

    def version_of(self, template: str) -> str | None:
        return self._versions.get(template)

    def visible(self, category: str) -> Mapping[str, _Owner]:
        """name -> owner (``.template``) for every name `category` can see directly."""
        return self._visible(category)

    def _visible(self, category: str) -> dict[str, _Owner]:
        """Every name `category` can see, nearer categories winning (built once)."""
        visible = self._merged.get(category)
        if visible is None:
            visible = {}
            for repository in reversed(self.load.tree.repositories(category)):
                visible.update(self._names.get(repository, {}))
            self._merged[category] = visible
        return visible

    def resolve(self, name: str, category: str) -> Resolution:
        owner = self._visible(category).get(name)
        if owner is not None:
            return Resolution(name, owner.template, self._versions.get(owner.template))
        # The rest does not depend on versions: remember it (trees repeat host tools).
        known = self._slow.get((name, category))
        if known is None:
            known = self._resolve_further(name, category)
            self._slow[(name, category)] = known
        if known.template is not None and known.version is None:
            return known._replace(version=self._versions.get(known.template))
        return known

    def _resolve_further(self, name: str, category: str) -> Resolution:
        repositories = self.load.tree.repositories(category)
        for repository in repositories:
            inactive = self._inactive.get(repository, {}).get(name)
            if inactive is not None:
                arch = self.load.context.target.arch
                return Resolution(
                    name, problem=f"'{name}' is a subpackage of {inactive} not built for {arch}"
                )
        if name.endswith(_AUTOPKG_SUFFIXES):
            for suffix in _AUTOPKG_SUFFIXES:
                if name.endswith(suffix):
                    base = self._visible(category).get(name.removesuffix(suffix))
                    if base is not None:
                        return Resolution(name, base.template)
        candidates: list[_Owner] = []
        for repository in repositories:
            candidates += self._provides.get(repository, {}).get(name, [])
        providers = sorted({c.template for c in candidates})
        if len(providers) == 1:
            return Resolution(name, providers[0], candidates[0].provided)
        if len(providers) > 1:
            return Resolution(
                name,
                problem=f"'{name}' is provided by several templates ({', '.join(providers)}); "
                "name one with '!provider'",
            )
        for other, names in self._names.items():
            if other not in repositories and name in names:
                return Resolution(
                    name,
                    problem=f"'{name}' is in {names[name].template}, which {category}/ cannot see",
                )
        return Resolution(name, problem=f"'{name}' is not in the tree")

    @staticmethod
    def target_of(dependency: version.Dependency) -> str:
        """The name a runtime dependency resolves through (cbuild's provider rules)."""
        if dependency.provider is None:
            return dependency.name
        if dependency.name.startswith("alt:"):
            return f"{dependency.name[4:]}-{dependency.provider}-default"
        return dependency.provider

    def names(self) -> Mapping[str, Mapping[str, str]]:
        """category -> package name -> template, for reports and tests."""
        return {c: {n: o.template for n, o in names.items()} for c, names in self._names.items()}
