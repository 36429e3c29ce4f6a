"""Splitting the installed files into packages: subpackage functions, then automatic ones.

Declared subpackages run in declaration order: what the ``@subpackage``
function returned — a list of paths (``"?path"`` optional, ``"@link=>target"``
a symlink), or a function such as ``self.default_devel()`` — moves files
from the template's destination directory into the subpackage's.

Then, for every package with the ``autosplit`` option, cbuild's automatic
subpackages take their well-known paths: ``-man`` (``usr/share/man``),
``-doc``, ``-static`` (with ``splitstatic``), ``-locale``, completions,
dinit and udev files. An automatic package that gets nothing is not made,
and none is made where a package of that name is declared. Licenses stay
with the package they license.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from apkfarm.build.driver.api import BuildSubpackage, BuildTemplate, TemplateError
from apkfarm.build.driver.evaluate import Evaluated
from apkfarm.build.driver.post_install import apply_file_modes

Take = Callable[[BuildSubpackage], None]


def _paths(*paths: str) -> Take:
    def take(package: BuildSubpackage) -> None:
        for path in paths:
            package.take(path, missing_ok=True)

    return take


def _static(package: BuildSubpackage) -> None:
    libdir = package.source_package.destdir / "usr/lib"
    if libdir.is_dir():
        for archive in sorted(libdir.rglob("*.a")):
            package.take(str(archive.relative_to(package.source_package.destdir)))


def _doc(package: BuildSubpackage) -> None:
    package.take_doc()


# (suffix, the option that must be on for it or None, how it takes its files)
AUTOSPLIT: tuple[tuple[str, str | None, Take], ...] = (
    ("static", "splitstatic", _static),
    ("doc", "splitdoc", _doc),
    ("man", None, _paths("usr/share/man")),
    ("dinit", "splitdinit", _paths("etc/dinit.d")),
    ("dinit-links", "splitdinit", _paths("usr/lib/dinit.d/boot.d", "usr/lib/dinit.d/user/boot.d")),
    ("initramfs-tools", None, _paths("usr/share/initramfs-tools")),
    ("udev", "splitudev", _paths("usr/lib/udev")),
    ("bashcomp", None, _paths("usr/share/bash-completion")),
    ("zshcomp", None, _paths("usr/share/zsh/site-functions")),
    ("fishcomp", None, _paths("usr/share/fish/completions", "usr/share/fish/vendor_completions.d")),
    ("locale", None, _paths("usr/share/locale")),
)


def package_options(
    spec_options: Mapping[str, Sequence[bool]],
    written: Any,
    pkgname: str,
    parent: Mapping[str, bool] | None,
) -> dict[str, bool]:
    """cbuild's option switches of one package (a subpackage inherits the global ones)."""
    options: dict[str, bool] = {}
    for name, (default, inherit) in spec_options.items():
        options[name] = parent[name] if parent is not None and inherit else bool(default)
    if pkgname.endswith("-devel"):
        options["splitstatic"] = True
    for entry in written if isinstance(written, list) else []:
        if isinstance(entry, str):
            key = entry.removeprefix("!")
            if key in options:
                options[key] = not entry.startswith("!")
    return options


def _install_function(package: BuildSubpackage, returned: Any) -> Callable[[], None]:
    if isinstance(returned, list):
        entries = list(returned)

        def install() -> None:
            for entry in entries:
                if not isinstance(entry, str):
                    raise TemplateError(f"subpackage '{package.pkgname}': paths must be strings")
                if entry.startswith("?"):
                    package.take(entry[1:], missing_ok=True)
                elif entry.startswith("@"):
                    link, arrow, target = entry[1:].partition("=>")
                    if not arrow or not link or not target:
                        raise TemplateError(f"malformed symlink spec '{entry}'")
                    package.make_link(link, target)
                else:
                    package.take(entry)

        return install
    if callable(returned):
        return returned  # type: ignore[no-any-return]
    raise TemplateError(
        f"invalid return for subpackage '{package.pkgname}' (must return a function or a list)"
    )


def _prune_empty(directory: Path) -> bool:
    """Remove empty directories below and including `directory`; True if it went."""
    empty = True
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            if not _prune_empty(child):
                empty = False
        else:
            empty = False
    if empty:
        directory.rmdir()
    return empty


def split(evaluated: Evaluated, *, autosplit: bool = True) -> list[dict[str, Any]]:
    """Run the subpackage functions and the automatic split; the packages, in packaging order."""
    template: BuildTemplate = evaluated.template
    spec = evaluated.spec
    template.destdir.mkdir(parents=True, exist_ok=True)
    packages: list[dict[str, Any]] = [{"name": template.pkgname, "auto": False}]
    options: dict[str, dict[str, bool]] = {
        template.pkgname: package_options(
            spec.options, evaluated.namespace.get("options", []), template.pkgname, None
        )
    }
    for declared in evaluated.subpackages:
        subpackage = BuildSubpackage(spec, declared.name, template, declared.alternative)
        install = _install_function(subpackage, declared.function(subpackage))
        subpackage.destdir.mkdir(parents=True, exist_ok=True)
        install()
        apply_file_modes(subpackage.destdir, subpackage.file_modes, subpackage.pkgname)
        template.subpkg_list.append(subpackage)
        options[subpackage.pkgname] = package_options(
            spec.options, subpackage.options, subpackage.pkgname, options[template.pkgname]
        )
        packages.append({"name": subpackage.pkgname, "auto": False})
    if not autosplit:
        return packages
    names = {entry["name"] for entry in packages}
    owners: list[BuildTemplate | BuildSubpackage] = [template, *template.subpkg_list]
    for owner in owners:
        owner_options = options[owner.pkgname]
        if not owner_options.get("autosplit", True):
            continue
        for suffix, option, take in AUTOSPLIT:
            name = f"{owner.pkgname}-{suffix}"
            if owner.pkgname.endswith(f"-{suffix}") or name in names:
                continue
            if option is not None and not owner_options.get(option, False):
                continue
            auto = BuildSubpackage(spec, name, owner, None, auto=True)
            auto.destdir.mkdir(parents=True, exist_ok=True)
            take(auto)
            if _prune_empty(auto.destdir):
                continue
            names.add(name)
            packages.append({"name": name, "auto": True, "parent": owner.pkgname})
    return packages
