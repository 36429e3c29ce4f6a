"""The build-time ``self``: the template worker's objects, plus what build phases need.

``BuildTemplate`` extends the worker's ``Template`` (fields, profile,
``self.error``) with cbuild's build API: ``self.do`` runs a command,
``self.make`` runs make, ``self.install_*`` put files into the package,
``self.cp``/``mv``/``rm``/``mkdir``/``ln_s``/``chmod``/``pushd``/``chdir``
work relative to the current directory, ``self.get_tool``/``get_cflags``
give the toolchain. ``BuildSubpackage`` extends the worker's
``Subpackage`` with ``self.take`` and cbuild's ``default_*`` installers.

A path argument starting with ``>/`` is relative to the package's
destination directory, as in cbuild. Destinations given to ``install_*``
must be relative (to the destination directory).
"""

from __future__ import annotations

import contextlib
import glob as globbing
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from apkfarm.build.driver import toolflags
from apkfarm.build.driver.config import BuildConfig
from apkfarm.build.driver.make import Make
from apkfarm.templates import worker

PathArg = Union[str, "os.PathLike[str]"]
TemplateError = worker.TemplateError


class CommandFailed(worker.TemplateError):
    """A command the build ran exited with a failure status."""


def _log(prefix: str, message: str) -> None:
    sys.stdout.write(f"=> {prefix}: {message}\n")
    sys.stdout.flush()


def _relative(path: PathArg, what: str) -> Path:
    result = Path(path)
    if result.is_absolute():
        raise TemplateError(f"{what}: path '{path}' must not be absolute")
    return result


def _submove(relpath: Path, dest_root: Path, src_root: Path) -> None:
    """Move ``src_root/relpath`` to ``dest_root/relpath``, merging directories."""
    source = src_root / relpath
    target = dest_root / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() and not target.is_symlink():
        source.rename(target)
        return
    if target.is_dir() and not target.is_symlink() and source.is_dir() and not source.is_symlink():
        for child in sorted(source.iterdir()):
            _submove(Path(child.name), target, source)
        source.rmdir()
        return
    raise TemplateError(f"'{relpath}' exists in both {src_root} and {dest_root}")


class FileOps:
    """File helpers shared by templates and subpackages; relative to the template's cwd."""

    pkgname: str

    def _build(self) -> BuildTemplate:
        raise NotImplementedError

    @property
    def destdir(self) -> Path:
        raise NotImplementedError

    def _path(self, path: PathArg) -> Path:
        text = os.fspath(path)
        if text.startswith(">/"):
            return self.destdir / text.removeprefix(">/")
        return self._build().cwd / text

    def _glob(self, path: PathArg) -> list[Path]:
        # glob.glob, not Path.glob: cbuild's semantics (`*` skips dotfiles)
        found = sorted(Path(p) for p in globbing.glob(str(self._path(path))))  # noqa: PTH207
        if not found:
            raise TemplateError(f"path '{path}' does not match any files")
        return found

    @contextlib.contextmanager
    def pushd(self, directory: PathArg, glob: bool = False) -> Iterator[None]:
        root = self._build()
        if glob:
            matches = self._glob(directory)
            if len(matches) != 1:
                raise TemplateError(f"path '{directory}' must match exactly one directory")
            new = matches[0]
        else:
            new = self._path(directory)
        if not new.is_dir():
            raise TemplateError(f"path '{new}' is not a directory")
        old = root.cwd
        root.cwd = new.resolve()
        try:
            yield
        finally:
            root.cwd = old

    def cp(
        self,
        src: PathArg,
        dest: PathArg,
        recursive: bool = False,
        symlinks: bool = True,
        glob: bool = False,
    ) -> Path:
        sources = self._glob(src) if glob else [self._path(src)]
        target = self._path(dest)
        result = target
        for source in sources:
            if source.is_dir() and not source.is_symlink():
                if not recursive:
                    raise TemplateError(f"'{source}' is a directory, but not using 'recursive'")
                where = target / source.name if target.is_dir() else target
                result = Path(shutil.copytree(source, where, symlinks=symlinks, dirs_exist_ok=True))
            else:
                result = Path(shutil.copy2(source, target, follow_symlinks=symlinks))
        return result

    def mv(self, src: PathArg, dest: PathArg, glob: bool = False) -> Path | list[Path]:
        target = self._path(dest)
        if not glob:
            return Path(shutil.move(self._path(src), target))
        return [Path(shutil.move(source, target)) for source in self._glob(src)]

    def mkdir(self, path: PathArg, parents: bool = False) -> None:
        self._path(path).mkdir(parents=parents, exist_ok=parents)

    def rm(
        self, path: PathArg, recursive: bool = False, force: bool = False, glob: bool = False
    ) -> None:
        targets = self._glob(path) if glob else [self._path(path)]
        for target in targets:
            if target.is_dir() and not target.is_symlink():
                if not recursive:
                    raise TemplateError(f"'{target}' is a directory")
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=force)

    def ln_s(self, src: PathArg, dest: PathArg, relative: bool = False) -> None:
        target = self._path(dest)
        source = os.fspath(src)
        if target.is_dir() and not target.is_symlink():
            target = target / Path(source).name
        if relative:
            source = os.path.relpath(self._path(source), start=target.parent)
        target.symlink_to(source)

    def chmod(self, path: PathArg, mode: int) -> None:
        self._path(path).chmod(mode)

    def find(self, path: PathArg, pattern: str, files: bool = False) -> Iterator[Path]:
        base = self._path(path)
        for found in sorted(base.rglob(pattern)):
            if files and not found.is_file():
                continue
            yield found if Path(path).is_absolute() else found.relative_to(self._build().cwd)

    def log(self, msg: str, end: str = "\n") -> None:
        _log(self.pkgname, str(msg))

    def log_warn(self, msg: str, end: str = "\n") -> None:
        _log(self.pkgname, f"WARNING: {msg}")

    log_red = log
    log_green = log


class BuildTemplate(FileOps, worker.Template):
    """``self`` of a template while it builds."""

    def __init__(
        self,
        spec: worker.Spec,
        item: dict[str, Any],
        context: worker.Context,
        namespace: dict[str, Any],
        config: BuildConfig,
    ) -> None:
        super().__init__(spec, item, context, namespace)
        paths = config.paths
        self.config = config
        self.builddir = Path(paths.builddir)
        self.srcdir = Path(paths.srcdir)
        self.cwd = self.srcdir
        self.statedir = Path(paths.statedir)
        self.destdir_base = Path(paths.destdir)
        self.sources_path = Path(paths.sources)
        self.sysroot_path = Path(paths.sysroot)
        self.bldroot_path = Path("/")
        self.source_date_epoch = config.source_date_epoch
        self.make_jobs = config.jobs
        self.link_threads = config.jobs
        self.current_phase = "evaluate"
        self.install_done = False
        self.style_functions: dict[str, Callable[[BuildTemplate], Any]] = {}
        self.make = Make(self)
        self.subpkg_list: list[BuildSubpackage] = []

    def _build(self) -> BuildTemplate:
        return self

    # --- paths cbuild templates read ------------------------------------------------

    @property
    def template_path(self) -> Path:
        return Path(self.config.paths.template_dir)

    @property
    def destdir(self) -> Path:
        return self.destdir_base / f"{self.pkgname}-{self.pkgver}"

    @property
    def chroot_cwd(self) -> Path:
        return self.cwd

    @property
    def chroot_srcdir(self) -> Path:
        return self.srcdir

    @property
    def chroot_destdir(self) -> Path:
        return self.destdir

    @property
    def chroot_sources_path(self) -> Path:
        return self.sources_path

    def chdir(self, path: PathArg) -> None:
        """Make `path` (relative to the current directory) the current directory."""
        new = self._path(path)
        if not new.is_dir():
            raise TemplateError(f"path '{new}' is not a directory")
        self.cwd = new.resolve()

    # --- the toolchain --------------------------------------------------------------

    def _is_host(self, target: str | None) -> bool:
        return target == "host" or (target is not None and target == self.get_profile("host").arch)

    def get_tool(self, name: str, target: str | None = None) -> str | None:
        host = self._is_host(target)
        written: Mapping[str, str] = self.tools
        if name in written:
            value = str(written[name])
            if not host and self.profile.cross and name in toolflags.CROSS_TOOLS:
                return f"{self.profile.triplet}-{value}"
            return value
        base: Mapping[str, str] = self.config.toolchain["host_tools" if host else "tools"]
        return base.get(name)

    def _hardening(self) -> dict[str, bool]:
        return toolflags.hardening(self.config.hardening, self.hardening)

    def has_hardening(self, name: str, target: str | None = None) -> bool:
        return bool(self._hardening().get(name, False))

    def has_lto(self, target: str | None = None) -> bool:
        return False

    def get_tool_flags(
        self,
        name: str,
        extra_flags: Sequence[str] = (),
        hardening: Sequence[str] = (),
        shell: bool = False,
        target: str | None = None,
    ) -> Any:
        host = self._is_host(target)
        base: Mapping[str, list[str]] = self.config.toolchain["host_flags" if host else "flags"]
        flags: list[str] = list(base.get(name, []))
        if not host and self.config.sysroot_populated:
            sysroot = self.sysroot_path
            if name in ("CFLAGS", "CXXFLAGS"):
                flags.append(f"-I{sysroot}/usr/include")
            elif name == "LDFLAGS":
                flags += [f"-L{sysroot}/usr/lib", f"-Wl,-rpath-link,{sysroot}/usr/lib"]
        switches = toolflags.hardening(self.config.hardening, [*self.hardening, *hardening])
        arch = self.get_profile("host").arch if host else self.profile.arch
        flags += toolflags.hardening_flags(
            switches, name, compiler=str(self.config.toolchain["compiler"]), arch=arch
        )
        written: Mapping[str, Sequence[str]] = self.tool_flags
        flags += [str(f) for f in written.get(name, [])]
        flags += [str(f) for f in extra_flags]
        return shlex.join(flags) if shell else flags

    def get_cflags(self, extra_flags: Sequence[str] = (), **kwargs: Any) -> Any:
        return self.get_tool_flags("CFLAGS", extra_flags, **kwargs)

    def get_cxxflags(self, extra_flags: Sequence[str] = (), **kwargs: Any) -> Any:
        return self.get_tool_flags("CXXFLAGS", extra_flags, **kwargs)

    def get_fflags(self, extra_flags: Sequence[str] = (), **kwargs: Any) -> Any:
        return self.get_tool_flags("FFLAGS", extra_flags, **kwargs)

    def get_ldflags(self, extra_flags: Sequence[str] = (), **kwargs: Any) -> Any:
        return self.get_tool_flags("LDFLAGS", extra_flags, **kwargs)

    # --- running commands ----------------------------------------------------------

    def command_env(
        self, extra: Mapping[str, str] | None = None, path: str | None = None
    ) -> dict[str, str]:
        """The environment of a command: base, toolchain, the template's ``env``, `extra`."""
        config = self.config
        env = dict(config.env)
        search = env.get("PATH", "/usr/bin:/bin")
        if config.toolchain.get("wrappers"):
            search = f"{self.statedir / 'wrappers'}:{search}"
        if path:
            search = f"{path}:{search}"
        env["PATH"] = search
        target = self.profile
        host = self.get_profile("host")
        env.update(
            CBUILD_TARGET_MACHINE=target.arch,
            CBUILD_TARGET_TRIPLET=target.triplet,
            CBUILD_TARGET_SYSROOT=str(self.sysroot_path),
            CBUILD_HOST_MACHINE=host.arch,
            CBUILD_HOST_TRIPLET=host.triplet,
            SOURCE_DATE_EPOCH=str(self.source_date_epoch),
        )
        for name in toolflags.TOOL_NAMES:
            value = self.get_tool(name)
            if value:
                env[name] = value
            host_value = self.get_tool(name, target="host")
            if host_value:
                env[f"BUILD_{name}"] = env[f"{name}_FOR_BUILD"] = host_value
        for name in toolflags.FLAG_NAMES:
            # shell=True joins the flags into one string; nothing runs a shell
            env[name] = self.get_tool_flags(name, shell=True)  # noqa: S604
            host_flags = self.get_tool_flags(name, shell=True, target="host")  # noqa: S604
            env[f"BUILD_{name}"] = env[f"{name}_FOR_BUILD"] = host_flags
        # A native check runs programs linked against the sysroot's libraries.
        if self.current_phase == "check" and config.sysroot_populated and not target.cross:
            env["LD_LIBRARY_PATH"] = f"{self.sysroot_path}/usr/lib"
        env.update({str(k): str(v) for k, v in self.env.items()})
        if extra:
            env.update({str(k): str(v) for k, v in extra.items()})
        return env

    def do(
        self,
        cmd: PathArg,
        *args: Any,
        env: Mapping[str, str] | None = None,
        wrksrc: PathArg | None = None,
        capture_output: bool = False,
        stdout: Any = None,
        stderr: Any = None,
        input: bytes | None = None,
        check: bool = True,
        allow_network: bool = False,  # no phase of this builder has network access
        path: str | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        argv = [
            os.fspath(cmd),
            *(os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args),
        ]
        cwd = self.cwd / os.fspath(wrksrc) if wrksrc is not None else self.cwd
        sys.stdout.write(f"+ {shlex.join(argv)}\n")
        sys.stdout.flush()
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=self.command_env(env, path),
                stdin=subprocess.DEVNULL if input is None else None,
                input=input,
                stdout=stdout,
                stderr=stderr,
                capture_output=capture_output,
                check=False,
            )
        except OSError as error:
            raise CommandFailed(f"cannot run '{argv[0]}': {error.strerror}") from None
        if check and done.returncode != 0:
            raise CommandFailed(
                f"command '{shlex.join(argv)[:200]}' failed with exit status {done.returncode}"
            )
        return done

    # --- installing files into the package -----------------------------------------

    def install_dir(self, dest: PathArg, mode: int | None = 0o755, empty: bool = False) -> None:
        directory = self.destdir / _relative(dest, "install_dir")
        directory.mkdir(parents=True, exist_ok=True)
        if mode is not None:
            directory.chmod(mode)
        if empty:
            (directory / ".empty").touch(mode=0o644)

    def install_file(
        self,
        src: PathArg,
        dest: PathArg,
        mode: int | None = 0o644,
        name: str | None = None,
        glob: bool = False,
    ) -> None:
        if glob and name:
            raise TemplateError("install_file: cannot give 'name' and 'glob' together")
        sources = self._glob(src) if glob else [self._path(src)]
        relative = _relative(dest, "install_file")
        for source in sources:
            target = self.destdir / relative / (name or source.name)
            if target.exists() or target.is_symlink():
                raise TemplateError(f"install_file: destination '{target}' already exists")
            self.install_dir(relative)
            shutil.copy2(source, target)
            if mode is not None:
                target.chmod(mode)

    def install_bin(
        self, src: PathArg, mode: int = 0o755, name: str | None = None, glob: bool = False
    ) -> None:
        self.install_file(src, "usr/bin", mode, name, glob)

    def install_lib(
        self, src: PathArg, mode: int = 0o755, name: str | None = None, glob: bool = False
    ) -> None:
        self.install_file(src, "usr/lib", mode, name, glob)

    def install_man(
        self, src: PathArg, name: str | None = None, cat: int | None = None, glob: bool = False
    ) -> None:
        if glob and name:
            raise TemplateError("install_man: cannot give 'name' and 'glob' together")
        sources = self._glob(src) if glob else [self._path(src)]
        for source in sources:
            section: int | str | None = cat
            if section is None:
                suffix = source.suffix[1:]
                if not suffix.isdigit():
                    raise TemplateError(f"install_man: manpage '{source.name}' has no section")
                section = suffix
            mandir = self.destdir / "usr/share/man" / f"man{section}"
            mandir.mkdir(parents=True, exist_ok=True)
            target = mandir / (f"{name}.{section}" if name else source.name)
            shutil.copy2(source, target)
            target.chmod(0o644)

    def install_license(
        self, src: PathArg, name: str | None = None, pkgname: str | None = None
    ) -> None:
        self.install_file(src, f"usr/share/licenses/{pkgname or self.pkgname}", 0o644, name)

    def install_files(
        self, path: PathArg, dest: PathArg, symlinks: bool = True, name: str | None = None
    ) -> None:
        source = self._path(path)
        target = self.destdir / _relative(dest, "install_files") / (name or source.name)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=symlinks)
        else:
            self.install_dir(dest)
            shutil.copy2(source, target)

    def install_link(self, dest: PathArg, tgt: PathArg, absolute: bool = False) -> None:
        link = self.destdir / _relative(dest, "install_link")
        if not absolute and os.fspath(tgt).startswith("/"):
            raise TemplateError(f"install_link: target '{tgt}' must not be absolute")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.fspath(tgt))

    def install_completion(self, src: PathArg, shell: str, name: str | None = None) -> None:
        name = name or self.pkgname
        places = {
            "bash": ("usr/share/bash-completion/completions", name),
            "zsh": ("usr/share/zsh/site-functions", f"_{name}"),
            "fish": ("usr/share/fish/vendor_completions.d", f"{name}.fish"),
        }
        if shell not in places:
            raise TemplateError(f"install_completion: unknown shell '{shell}'")
        directory, file_name = places[shell]
        self.install_file(src, directory, name=file_name)

    def uninstall(self, path: str, glob: bool = False) -> None:
        relative = _relative(path, "uninstall")
        if glob:
            targets = sorted(self.destdir.glob(str(relative)))
        else:
            target = self.destdir / relative
            targets = [target] if target.exists() or target.is_symlink() else []
        if not targets:
            raise TemplateError(f"uninstall: path '{path}' does not match anything")
        for target in targets:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()

    def rename(
        self,
        src: str,
        dest: str,
        relative: bool = True,
        glob: bool = False,
        keep_name: bool = False,
    ) -> None:
        _relative(src, "rename")
        _relative(dest, "rename")
        if glob:
            matches = sorted(self.destdir.glob(src))
            if len(matches) != 1:
                raise TemplateError(f"rename: glob '{src}' must match one path")
            source = matches[0]
        else:
            source = self.destdir / src
        target = (source.parent / dest) if relative else (self.destdir / dest)
        if keep_name:
            target.mkdir(parents=True, exist_ok=True)
            target = target / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)


def _take_extra(package: BuildSubpackage, extra: Any) -> None:
    if extra is None:
        return
    if isinstance(extra, list):
        for entry in extra:
            package.take(entry)
    elif callable(extra):
        extra()
    else:
        raise TemplateError(f"subpackage '{package.pkgname}': extra must be a list or a function")


class BuildSubpackage(FileOps, worker.Subpackage):
    """``self`` inside a subpackage function (and the package an automatic split makes).

    It takes files from its parent's destination directory: the template's,
    or for automatic ``-man``/``-doc``/... packages of a subpackage, that
    subpackage's.
    """

    def __init__(
        self,
        spec: worker.Spec,
        name: str,
        parent: BuildTemplate | BuildSubpackage,
        alternative: str | None,
        *,
        auto: bool = False,
    ) -> None:
        super().__init__(spec, name, parent, alternative)  # type: ignore[arg-type]
        self.source_package = parent
        self.template = parent._build()
        self.auto = auto

    def _build(self) -> BuildTemplate:
        return self.template

    @property
    def destdir(self) -> Path:
        return self.template.destdir_base / f"{self.pkgname}-{self.template.pkgver}"

    @property
    def chroot_destdir(self) -> Path:
        return self.destdir

    def take(self, p: PathArg, missing_ok: bool = False) -> None:
        """Move what `p` (a glob relative to the parent's destdir) matches into this package."""
        text = os.fspath(p)
        source_root = self.source_package.destdir
        for pattern, optional in _expand_take(text):
            relative = _relative(pattern, "take")
            found = sorted(globbing.glob(str(source_root / relative)))  # noqa: PTH207
            if not found and not (missing_ok or optional):
                raise TemplateError(f"take(): path '{text}' did not match anything")
            for match in found:
                moved = Path(match).relative_to(source_root)
                _log(self.pkgname, f"taking {moved}")
                _submove(moved, self.destdir, source_root)

    def make_link(self, path: str, tgt: str) -> None:
        link = self.destdir / _relative(path, "make_link")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(tgt)

    def take_static(self) -> None:
        self.take("usr/lib/*.a")

    def take_devel(self, man: Any = "23") -> None:
        source = self.source_package.destdir
        for config in sorted((source / "usr/bin").glob("*-config")):
            if config.name != "pkg-config":
                self.take(f"usr/bin/{config.name}")
        self.take("usr/lib/*.a", missing_ok=True)
        for library in sorted((source / "usr/lib").glob("*.so")):
            # a real ELF file named .so is a plugin or an unversioned library, not a devel link
            if library.is_symlink() or not _is_elf(library):
                self.take(f"usr/lib/{library.name}")
            else:
                self.log_warn(f"{library.name}: unsuffixed ELF .so, left out of the -devel package")
        for directory in (
            "usr/lib/pkgconfig", "usr/lib/cmake", "usr/lib/glade/modules", "usr/include",
            "usr/share/cmake", "usr/share/pkgconfig", "usr/share/aclocal", "usr/share/gettext",
            "usr/share/vala/vapi", "usr/share/gir-[0-9]*", "usr/share/glade/catalogs",
        ):  # fmt: skip
            self.take(directory, missing_ok=True)
        if man:
            for page in sorted((source / "usr/share/man/man1").glob("*-config.1")):
                if page.stem != "pkg-config":
                    self.take(f"usr/share/man/man1/{page.name}")
            self.take(f"usr/share/man/man[{man}]", missing_ok=True)

    def take_doc(self) -> None:
        for directory in (
            "usr/share/doc", "usr/share/info", "usr/share/html", "usr/share/gtk-doc",
            "usr/share/ri", "usr/share/help", "usr/share/devhelp/books",
        ):  # fmt: skip
            self.take(directory, missing_ok=True)

    def take_libs(self) -> None:
        self.take("usr/lib/lib*.so.[0-9]*")
        self.take("usr/lib/girepository-[0-9]*", missing_ok=True)

    def take_progs(self, man: Any = "18") -> None:
        self.take("usr/bin/*")
        for directory in (
            "usr/share/bash-completion", "usr/share/zsh", "usr/share/fish/completions",
            "usr/share/fish/vendor_completions.d",
        ):  # fmt: skip
            self.take(directory, missing_ok=True)
        if man:
            self.take(f"usr/share/man/man[{man}]", missing_ok=True)

    def _deferred(self, take: Callable[[], None], extra: Any) -> Callable[[], None]:
        def install() -> None:
            take()
            _take_extra(self, extra)

        return install

    def default_devel(self, man: Any = "23", extra: Any = None) -> Callable[[], None]:  # type: ignore[override]
        return self._deferred(lambda: self.take_devel(man), extra)

    def default_static(self, extra: Any = None) -> Callable[[], None]:  # type: ignore[override]
        return self._deferred(self.take_static, extra)

    def default_doc(self, extra: Any = None) -> Callable[[], None]:  # type: ignore[override]
        return self._deferred(self.take_doc, extra)

    def default_libs(self, extra: Any = None) -> Callable[[], None]:  # type: ignore[override]
        return self._deferred(self.take_libs, extra)

    def default_progs(self, man: Any = "18", extra: Any = None) -> Callable[[], None]:  # type: ignore[override]
        return self._deferred(lambda: self.take_progs(man), extra)


def _expand_take(text: str) -> list[tuple[str, bool]]:
    """cbuild's shorthands, as (glob, optional) pairs: ``cmd:NAME`` (a program and its
    man page), ``lib:NAME``, ``man:NAME.N``; anything else is a path glob."""
    kind, colon, rest = text.partition(":")
    if not colon or "/" in kind:
        return [(text, False)]
    if kind == "cmd":
        return [(f"usr/bin/{rest}", False), (f"usr/share/man/man[18]/{rest}.[18]", True)]
    if kind == "lib":
        return [(f"usr/lib/{rest}", False)]
    if kind == "man":
        section = rest.rsplit(".", 1)[-1]
        return [(f"usr/share/man/man{section}/{rest}", False)]
    return [(text, False)]


def _is_elf(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(4) == b"\x7fELF"
