"""Helpers shared by the template, graph and plan tests (this module has no tests).

``make_load`` builds a ``LoadResult`` from worker-shaped results without any
sandbox, so that rules, graph and plan logic can be tested as pure code;
``write_tree`` writes a cports-shaped tree for the sandboxed tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from apkfarm.profiles import resolve_context
from apkfarm.templates import LoadPolicy, LoadResult, Template, TemplateIssue
from apkfarm.templates.loader import _check_symlinks
from apkfarm.templates.rules import apply_rules
from apkfarm.templates.tree import CategoryListing, TemplateFile, TreeSnapshot

PORTS = Path(__file__).resolve().parent.parent / "data" / "ports"

BASE_FIELDS: dict[str, Any] = {
    "pkgver": "1.0",
    "pkgrel": 0,
    "pkgdesc": "Test package",
    "license": "MIT",
    "url": "https://example.org/pkg",
}


def raw(
    pkgname: str,
    *,
    subpackages: Iterable[str | dict[str, Any]] = (),
    inactive: Iterable[str] = (),
    **fields: Any,
) -> dict[str, Any]:
    """A worker result for a valid template named `pkgname` with `fields` set.

    A subpackage is a name, or a dict with "name" and the fields its
    function set (e.g. {"name": "foo-devel", "depends": ["foo=1.0-r0"]}).
    """
    entries = []
    for given in subpackages:
        spec = {"name": given} if isinstance(given, str) else dict(given)
        name = spec.pop("name")
        entries.append(
            {
                "name": name,
                "declared": name,
                "alternative": None,
                "install": {"kind": "default_devel", "man": "23", "extra": None},
                "fields": spec,
            }
        )
    return {
        "ok": True,
        "fields": {**BASE_FIELDS, "pkgname": pkgname, **fields},
        "unknown_variables": [],
        "unknown_hooks": [],
        "hooks": [],
        "problems": [],
        "subpackages": entries,
        "all_subpackages": [e["name"] for e in entries] + list(inactive),
        "custom_targets": [],
        "log": [],
    }


def make_load(
    results: Mapping[str, dict[str, Any]],
    *,
    arch: str = "x86_64",
    host: str = "x86_64",
    parents: Mapping[str, str] | None = None,
    policy: LoadPolicy | None = None,
    links: Mapping[str, str] | None = None,
) -> LoadResult:
    """A LoadResult for templates given as ``{"main/foo": raw("foo", ...)}``.

    Subpackage symlinks are created for every declared subpackage unless
    `links` (``{"main/foo-devel": "foo"}``) says exactly which exist.
    """
    policy = policy or LoadPolicy()
    parents = {"user": "main"} if parents is None else parents
    context = resolve_context(arch, host=host)
    by_category: dict[str, dict[str, dict[str, Any]]] = {}
    for full_name, result in results.items():
        category, name = full_name.split("/")
        by_category.setdefault(category, {})[name] = result
    categories: dict[str, CategoryListing] = {}
    files: dict[str, TemplateFile] = {}
    for category, entries in by_category.items():
        if links is None:
            symlinks = {
                sp: name for name, r in entries.items() for sp in r.get("all_subpackages", [])
            }
        else:
            symlinks = {
                full.split("/")[1]: target
                for full, target in links.items()
                if full.split("/")[0] == category
            }
        categories[category] = CategoryListing(
            name=category,
            templates=tuple(sorted(entries)),
            symlinks=symlinks,
            parent_link=f"../{parents[category]}" if category in parents else None,
            oddities=(),
        )
        for name in entries:
            files[f"{category}/{name}"] = TemplateFile(
                category, name, Path(f"/nonexistent/{category}/{name}/template.py"), "0" * 64
            )
    snapshot = TreeSnapshot(Path("/nonexistent"), categories, files)
    templates: dict[str, Template] = {}
    errors: list[TemplateIssue] = []
    exclusions: list[TemplateIssue] = []
    for full_name, result in results.items():
        category, name = full_name.split("/")
        if category not in policy.categories:
            exclusions.append(TemplateIssue(full_name, "disallowed category"))
            continue
        outcome = apply_rules(
            result,
            category=category,
            dirname=name,
            context=context,
            policy=policy,
            repositories=snapshot.repositories(category),
        )
        if outcome.template is None:
            errors += [TemplateIssue(full_name, m) for m in outcome.errors]
        else:
            templates[full_name] = outcome.template
    errors += _check_symlinks(snapshot, templates, policy)
    for name in {i.template for i in errors}:
        templates.pop(name, None)
    exclusions += [TemplateIssue(n, t.excluded) for n, t in templates.items() if t.excluded]
    return LoadResult(
        context=context,
        policy=policy,
        tree=snapshot,
        templates=dict(sorted(templates.items())),
        errors=sorted(errors, key=lambda i: (i.template, i.message)),
        exclusions=sorted(exclusions, key=lambda i: i.template),
    )


def write_tree(
    root: Path,
    templates: Mapping[str, str],
    *,
    links: Mapping[str, str] | None = None,
    parents: Mapping[str, str] | None = None,
) -> Path:
    """Write ``{"main/foo": source}`` templates, symlinks and ``.parent`` links under `root`."""
    for full_name, source in templates.items():
        directory = root / full_name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "template.py").write_text(source)
    for full_name, target in (links or {}).items():
        (root / full_name).symlink_to(target)
    for category, parent in ({"user": "main"} if parents is None else parents).items():
        if (root / category).is_dir():
            (root / category / ".parent").symlink_to(f"../{parent}")
    return root


def template_source(pkgname: str, body: str = "", **fields: Any) -> str:
    """A valid template.py for `pkgname` with `fields` assigned, then `body`."""
    values = {**BASE_FIELDS, "pkgname": pkgname, **fields}
    lines = [f"{key} = {value!r}" for key, value in values.items()]
    return "\n".join(lines) + "\n" + body
