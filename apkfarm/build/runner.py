"""Building one template for one architecture: ``run_build(request, log) -> BuildResult``.

On the host, in order (each a phase of the log, with its timing):

``setup``
    resolve the build context and toolchain (the build root must hold
    them), evaluate the template in the evaluation sandbox, match the
    request's source files to the template's ``source`` entries and check
    their sha256;
``dependencies``
    install ``makedepends`` (and ``checkdepends`` when the check runs)
    from the farm's signed repository into the build's sysroot
    (``apkfarm.build.sysroot``);
``extract``
    unpack the sources with the checked extractor (``apkfarm.build.extract``).

Then, in the build sandbox, the driver (``apkfarm.build.driver``) runs the
template's phases — prepare, patch, configure, build, check, install — and
splits the packages. Back on the host, ``package`` scans, lints and packs
them (``apkfarm.build.packaging``).

The build sandbox (``SandboxSpec``): a read-only root made of the build
root's /usr and a few /etc files (``BuildRoot``) plus generated identity
files; writable only ``/builddir`` and ``/destdir`` (this build's
directories) and a private ``/tmp`` tmpfs; the sysroot, the template's
directory and the sources read-only; no network (its own network
namespace) in every phase; a new PID namespace, session and hostname;
every capability dropped; a fresh unprivileged host uid per build (when
the builder runs as root) and process limits; a clean environment with
``SOURCE_DATE_EPOCH``. The paths inside are fixed (``/builddir/<pkgname>-
<pkgver>``), so builds do not depend on where the work directory is.

``run_build_unsandboxed_for_benchmark`` runs the same driver without bwrap,
as the calling user, for the benchmark that measures what the sandbox
costs; it refuses any tree but this project's own examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import apkfarm
from apkfarm.apk.gzip_members import DEFAULT_DATA_COMPRESSION, DataCompression
from apkfarm.build.driver.config import BuildConfig, BuildPaths
from apkfarm.build.errors import BuildError
from apkfarm.build.extract import extract_sources
from apkfarm.build.load import load_template
from apkfarm.build.log import BuildLog, LogLine, PhaseFinished, PhaseStarted
from apkfarm.build.packaging import StagedEntry, package_build
from apkfarm.build.result import BuildFailed, BuildRequest, BuildResult, PhaseTiming
from apkfarm.build.supervise import DriverOutcome, DriverRun, OutputLimits
from apkfarm.build.sysroot import Sysroot
from apkfarm.build.toolchain import Compiler, Toolchain, resolve_toolchain
from apkfarm.errors import ApkfarmError
from apkfarm.profiles import BuildContext, resolve_context
from apkfarm.sandbox import (
    MIB,
    Bind,
    BuildRoot,
    ResourceLimits,
    SandboxSpec,
    Tmpfs,
    python_runtime,
    require_bwrap,
    write_identity_files,
)
from apkfarm.templates.evaluator import EvaluatorSettings
from apkfarm.templates.fields import HARDENING, worker_spec
from apkfarm.templates.model import Template
from apkfarm.templates.sources import SourceError, template_sources

__all__ = [
    "EXAMPLES_TREE",
    "Builder",
    "BuilderSettings",
    "remove_work_dir",
    "run_build",
    "run_build_unsandboxed_for_benchmark",
]

_PACKAGE_ROOT = Path(apkfarm.__file__).resolve().parent
DRIVER_DIR = _PACKAGE_ROOT / "build" / "driver"
WORKER_FILE = _PACKAGE_ROOT / "templates" / "worker.py"
# The only tree the unsandboxed benchmark mode builds from (a source checkout's).
EXAMPLES_TREE = _PACKAGE_ROOT.parent / "examples"

# Inside the build sandbox.
LIB_MOUNT = PurePosixPath("/run/apkfarm/lib")
CONFIG_MOUNT = PurePosixPath("/run/apkfarm/build.json")
BUILDDIR = PurePosixPath("/builddir")
DESTDIR = PurePosixPath("/destdir")
SYSROOT = PurePosixPath("/sysroot")
PORTS = PurePosixPath("/ports")
SOURCES = PurePosixPath("/sources")
TMP = PurePosixPath("/tmp")  # noqa: S108 - the sandbox's own private tmpfs

# Build uids are handed out across every builder of this process; concurrent
# builds never share one, so RLIMIT_NPROC counts each build alone.
_UIDS = itertools.count(os.getpid() * 64)


def _default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class BuilderSettings:
    """How this builder builds (not what): parallelism, toolchain, sandbox limits."""

    jobs: int = field(default_factory=_default_jobs)
    compiler: Compiler = "gcc"
    build_root: BuildRoot = field(default_factory=BuildRoot)
    run_check: bool = True
    allow_restricted: bool = False
    # Each build runs as its own host uid from this range (when we are root).
    # Nothing else on the machine may use these uids.
    uid_base: int = 2_100_000_000
    uid_count: int = 1 << 16
    limits: ResourceLimits = field(
        default_factory=lambda: ResourceLimits(
            address_space=None,  # compilers and qemu reserve a lot of address space
            cpu_seconds=None,  # the wall-clock timeout bounds a build
            file_size=64 << 30,
            processes=16384,
            open_files=16384,
            core_size=0,
        )
    )
    tmp_size: int = 4 << 30
    max_log_bytes: int = 256 * MIB
    max_line_bytes: int = 64 << 10
    tail_lines: int = 40
    # The interpreter that runs the driver inside the sandbox (Python >= 3.10);
    # default: the build root's python3.
    python: Path | None = None
    evaluator: EvaluatorSettings | None = None
    # How package data members are deflated unless a template's `compression` says.
    data_compression: DataCompression = DEFAULT_DATA_COMPRESSION


@dataclass(frozen=True)
class _Layout:
    """The build's directories on the host (under the request's work_dir)."""

    work: Path

    @property
    def builddir(self) -> Path:
        return self.work / "builddir"

    @property
    def destdir(self) -> Path:
        return self.work / "destdir"

    @property
    def sysroot(self) -> Path:
        return self.work / "sysroot"

    @property
    def downloads(self) -> Path:
        return self.work / "deps"

    @property
    def etc(self) -> Path:
        return self.work / "etc"

    @property
    def spool(self) -> Path:
        return self.work / "spool"

    @property
    def config(self) -> Path:
        return self.work / "build.json"


class _Phases:
    """Host-side phases: markers and timings in the log, failures named by phase."""

    def __init__(self, request: BuildRequest, log: BuildLog) -> None:
        self.request = request
        self.log = log
        self.started = time.monotonic()
        self.timings: list[PhaseTiming] = []
        self.current = "setup"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def say(self, text: str) -> None:
        await self.log.emit(LogLine(text, self.current, self.elapsed(), source="builder"))

    @contextlib.asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        self.current = name
        begun = time.monotonic()
        await self.log.emit(PhaseStarted(name, self.elapsed()))
        try:
            yield
        except BuildFailed:
            await self._finish(name, begun, "failed")
            raise
        except (ApkfarmError, OSError) as error:
            await self.say(str(error))
            await self._finish(name, begun, "failed")
            raise BuildFailed(self.request.template, name, str(error)) from error
        except BaseException:
            await self._finish(name, begun, "failed")
            raise
        await self._finish(name, begun, "ok")

    async def _finish(self, name: str, begun: float, status: Any) -> None:
        seconds = time.monotonic() - begun
        self.timings.append(PhaseTiming(name, seconds, status))
        await self.log.emit(PhaseFinished(name, self.elapsed(), seconds, status))


@dataclass(frozen=True)
class _Source:
    filename: str
    path: Path
    sha256: str
    extract: bool


class Builder:
    """Runs builds with one set of settings; ``build()`` may run concurrently."""

    def __init__(self, settings: BuilderSettings | None = None) -> None:
        self.settings = settings or BuilderSettings()

    async def build(self, request: BuildRequest, log: BuildLog) -> BuildResult:
        """Build `request` in the sandbox; raises BuildFailed naming the phase."""
        return await self._build(request, log, sandboxed=True)

    async def build_unsandboxed_for_benchmark(
        self, request: BuildRequest, log: BuildLog
    ) -> BuildResult:
        """The same build without bwrap, as this process's user: ONLY for measuring the
        sandbox's cost, and only for this project's examples tree."""
        tree = request.tree.resolve()
        if not EXAMPLES_TREE.is_dir() or tree != EXAMPLES_TREE.resolve():
            raise BuildFailed(
                request.template,
                "setup",
                f"the unsandboxed benchmark mode builds only {EXAMPLES_TREE}, not {tree}",
            )
        return await self._build(request, log, sandboxed=False)

    # --- the pipeline ------------------------------------------------------------------

    async def _build(self, request: BuildRequest, log: BuildLog, *, sandboxed: bool) -> BuildResult:
        phases = _Phases(request, log)
        layout = _Layout(request.work_dir)
        async with phases.phase("setup"):
            _prepare_work_dir(request.work_dir)
            context = resolve_context(request.arch, tree=request.tree)
            toolchain = resolve_toolchain(context, self.settings.compiler)
            toolchain.check(self.settings.build_root)
            toolchain = toolchain.for_build_root(self.settings.build_root)
            template = await _in_thread(
                load_template,
                request.tree,
                request.template,
                context,
                settings=self.settings.evaluator,
                allow_restricted=self.settings.allow_restricted,
            )
            sources = await _in_thread(_match_sources, template, request.sources)
            skip_check = self._skip_check(context)
            await phases.say(
                f"building {template.full_name}-{template.version} for {context.target.arch}"
                + (f" on {context.host.arch} (cross)" if context.cross else "")
            )
        sysroot = Sysroot(layout.sysroot, ())
        wanted = list(template.makedepends)
        if skip_check is None:
            wanted += [d for d in template.checkdepends if d not in wanted]
        layout.sysroot.mkdir()
        if wanted:
            async with phases.phase("dependencies"):
                sysroot = await self._install_dependencies(
                    request, template, wanted, layout, phases
                )
        srcdir = layout.builddir / f"{template.pkgname}-{template.pkgver}"
        async with phases.phase("extract"):
            archives = [s.path for s in sources if s.extract]
            if archives:
                result = await _in_thread(extract_sources, archives, srcdir)
                for report in result.archives:
                    await phases.say(
                        f"extracted {report.archive.name}: {report.members} entries, "
                        f"{report.bytes_written} bytes"
                    )
            else:
                srcdir.mkdir(parents=True)
            layout.destdir.mkdir()
            layout.spool.mkdir()
            uid = self.settings.uid_base + next(_UIDS) % self.settings.uid_count
            if sandboxed and os.geteuid() == 0:
                # the build's own uid owns what it may write, and nothing else
                await _in_thread(_chown_tree, layout.builddir, uid)
                await _in_thread(_chown_tree, layout.destdir, uid)
        try:
            outcome = await self._start_and_run_driver(
                request=request,
                template=template,
                context=context,
                toolchain=toolchain,
                sources=sources,
                sysroot=sysroot,
                layout=layout,
                phases=phases,
                sandboxed=sandboxed,
                uid=uid,
                skip_check=skip_check,
            )
        except (ApkfarmError, OSError) as error:
            raise BuildFailed(
                request.template, "sandbox", f"cannot start the build: {error}"
            ) from error
        entries = self._staged(request, outcome, phases)
        async with phases.phase("package"):
            built, warnings = await _in_thread(
                package_build,
                template,
                entries,
                arch=context.target.arch,
                destdir=layout.destdir,
                template_dir=request.tree / template.category / template.pkgname,
                sysroot_provides=sysroot.provides(),
                base_libraries=toolchain.base_libraries,
                source_date_epoch=request.source_date_epoch,
                commit=request.commit,
                spool_dir=layout.spool,
                compression=self.settings.data_compression,
            )
            for warning in warnings:
                await phases.say(warning)
            for package in built:
                info = package.info
                await phases.say(
                    f"{info.filename}: {package.package.unsigned_size} bytes; "
                    f"depends: {' '.join(info.depends) or '-'}; "
                    f"provides: {' '.join(info.provides) or '-'}"
                )
        timings = sorted(
            [*phases.timings, *outcome.phases], key=lambda t: _PHASE_ORDER.get(t.phase, 50)
        )
        return BuildResult(
            template=template.full_name,
            arch=context.target.arch,
            version=template.version,
            packages=built,
            phases=timings,
            seconds=phases.elapsed(),
            dependencies=tuple(p.label for p in sysroot.packages),
        )

    def _skip_check(self, context: BuildContext) -> str | None:
        if context.cross:
            return f"cross build ({context.host.arch} -> {context.target.arch})"
        if not self.settings.run_check:
            return "disabled by the builder's settings"
        return None

    async def _install_dependencies(
        self,
        request: BuildRequest,
        template: Template,
        wanted: list[str],
        layout: _Layout,
        phases: _Phases,
    ) -> Sysroot:
        source = request.dependencies
        if source is None:
            raise BuildFailed(
                request.template,
                "dependencies",
                f"needs {', '.join(wanted)} but the build was given no dependency source",
            )
        messages: list[str] = []
        sysroot = await _in_thread(
            source.install,
            wanted,
            categories=template.repositories or (template.category,),
            arch=request.arch,
            sysroot=layout.sysroot,
            download_dir=layout.downloads,
            progress=messages.append,
        )
        for message in messages:
            await phases.say(message)
        return sysroot

    def _staged(
        self, request: BuildRequest, outcome: DriverOutcome, phases: _Phases
    ) -> list[StagedEntry]:
        template = request.template
        if outcome.killed is not None:
            message = outcome.kill_message
            if outcome.killed in ("timeout", "silence"):
                message += "; the build was killed"
            raise BuildFailed(
                template, outcome.phase, message, reason=outcome.killed, tail=outcome.tail
            )
        if outcome.failure is not None:
            phase, message = outcome.failure
            raise BuildFailed(template, phase, message, tail=outcome.tail)
        if outcome.returncode != 0 or outcome.packages is None:
            raise BuildFailed(
                template,
                outcome.phase,
                f"the build driver exited with status {outcome.returncode} without a result",
                tail=outcome.tail,
            )
        try:
            return [StagedEntry.from_event(p) for p in outcome.packages]
        except BuildError as error:
            raise BuildFailed(template, "split", str(error)) from error

    # --- the sandbox -------------------------------------------------------------------

    async def _start_and_run_driver(
        self,
        *,
        request: BuildRequest,
        template: Template,
        context: BuildContext,
        toolchain: Toolchain,
        sources: list[_Source],
        sysroot: Sysroot,
        layout: _Layout,
        phases: _Phases,
        sandboxed: bool,
        uid: int,
        skip_check: str | None,
    ) -> DriverOutcome:
        srcname = f"{template.pkgname}-{template.pkgver}"
        template_dir = (request.tree / template.category / template.pkgname).resolve()
        if sandboxed:
            paths = BuildPaths(
                builddir=str(BUILDDIR),
                srcdir=str(BUILDDIR / srcname),
                statedir=str(BUILDDIR / ".apkfarm"),
                destdir=str(DESTDIR),
                sysroot=str(SYSROOT),
                template_dir=str(PORTS / template.category / template.pkgname),
                sources=str(SOURCES),
                tmpdir=str(TMP),
            )
        else:
            local_sources = layout.work / "sources"
            local_sources.mkdir()
            for source in sources:
                (local_sources / source.filename).symlink_to(source.path.resolve())
            (layout.work / "tmp").mkdir()
            paths = BuildPaths(
                builddir=str(layout.builddir),
                srcdir=str(layout.builddir / srcname),
                statedir=str(layout.builddir / ".apkfarm"),
                destdir=str(layout.destdir),
                sysroot=str(layout.sysroot),
                template_dir=str(template_dir),
                sources=str(local_sources),
                tmpdir=str(layout.work / "tmp"),
            )
        env = _base_environment(paths, request.source_date_epoch)
        config = BuildConfig(
            spec=worker_spec(),
            item={
                "id": 1,
                "category": template.category,
                "name": template.pkgname,
                "source": (template_dir / "template.py").read_bytes().decode("utf-8"),
                "repositories": list(template.repositories),
            },
            context=context.to_json(),
            paths=paths,
            toolchain=toolchain.to_json(),
            env=env,
            hardening=dict(HARDENING),
            jobs=self.settings.jobs,
            source_date_epoch=request.source_date_epoch,
            skip_check=skip_check,
            sysroot_populated=sysroot.populated,
        )
        layout.config.write_text(config.to_json(), encoding="utf-8")
        layout.config.chmod(0o644)
        limits = OutputLimits(
            timeout=request.timeout,
            silence=request.silence_timeout,
            max_log_bytes=self.settings.max_log_bytes,
            max_line_bytes=self.settings.max_line_bytes,
            tail_lines=self.settings.tail_lines,
        )
        if sandboxed:
            spec, python = self._sandbox(
                request=request,
                template=template,
                template_dir=template_dir,
                sources=sources,
                layout=layout,
                env=env,
                uid=uid,
            )

            def argv(control_fd: int, ack_fd: int, info_fd: int | None) -> list[str]:
                command = _driver_command(python, LIB_MOUNT, CONFIG_MOUNT, control_fd, ack_fd)
                return spec.argv(command, info_fd=info_fd)

            popen_env = spec.popen_env()
        else:
            lib = layout.work / "lib"
            (lib / "apkfarm/templates").mkdir(parents=True)
            (lib / "apkfarm/build").mkdir(parents=True)
            (lib / "apkfarm/templates/worker.py").symlink_to(WORKER_FILE)
            (lib / "apkfarm/build/driver").symlink_to(DRIVER_DIR)
            python = str(self._host_python())

            def argv(control_fd: int, ack_fd: int, info_fd: int | None) -> list[str]:
                return _driver_command(python, lib, layout.config, control_fd, ack_fd)

            popen_env = env
        run = DriverRun(
            argv, popen_env, phases.log, limits, sandboxed=sandboxed, started=phases.started
        )
        phases.current = "driver"
        return await run.run()

    def _host_python(self) -> Path:
        if self.settings.python is not None:
            return self.settings.python
        candidate = self.settings.build_root.root / "usr/bin/python3"
        return candidate if candidate.exists() else python_runtime().executable

    def _sandbox(
        self,
        *,
        request: BuildRequest,
        template: Template,
        template_dir: Path,
        sources: list[_Source],
        layout: _Layout,
        env: Mapping[str, str],
        uid: int,
    ) -> tuple[SandboxSpec, str]:
        settings = self.settings
        build_root = settings.build_root
        root_binds, links = build_root.mounts()
        binds: list[Bind] = list(root_binds)
        symlinks = list(links)
        if build_root.root == Path("/"):
            runtime = python_runtime(self._host_python())
            covered = [b.source for b in root_binds]
            for bind in runtime.binds:
                if not any(bind.source.is_relative_to(c) for c in covered):
                    binds.append(bind)
            python = str(runtime.executable)
        else:
            python = str(settings.python or "/usr/bin/python3")
        binds += [
            Bind(WORKER_FILE, LIB_MOUNT / "apkfarm/templates/worker.py"),
            Bind(DRIVER_DIR, LIB_MOUNT / "apkfarm/build/driver"),
            Bind(layout.config, CONFIG_MOUNT),
            *write_identity_files(layout.etc, uid=uid, gid=uid),
            Bind(template_dir, PORTS / template.category / template.pkgname),
            Bind(layout.sysroot, SYSROOT),
            Bind(layout.builddir, BUILDDIR, writable=True),
            Bind(layout.destdir, DESTDIR, writable=True),
        ]
        binds += [Bind(s.path.resolve(), SOURCES / s.filename) for s in sources]
        spec = SandboxSpec(
            binds=tuple(binds),
            symlinks=tuple(symlinks),
            tmpfs=(Tmpfs(TMP, settings.tmp_size, mode=0o1777),),
            dev=True,
            proc=True,
            network=False,
            uid=uid,
            gid=uid,
            env=env,
            workdir=BUILDDIR,
            hostname="apkfarm-build",
            limits=settings.limits,
            bwrap=require_bwrap(),
            read_only_root=True,
        )
        # setpriv and prlimit are in the build root's /usr: no extra binds.
        return spec, python


_PHASE_ORDER = {
    name: index
    for index, name in enumerate(
        (
            "setup", "dependencies", "extract", "prepare", "patch", "configure",
            "build", "check", "install", "split", "package",
        )
    )
}  # fmt: skip


async def _in_thread[T](function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run blocking work in a thread; if the build is cancelled meanwhile, wait for the
    thread to finish before the cancellation goes on, so that nothing writes into the
    work directory once run_build has returned."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


def _driver_command(
    python: str,
    lib: PurePosixPath | Path,
    config: PurePosixPath | Path,
    control_fd: int,
    ack_fd: int,
) -> list[str]:
    """The driver's command line, for `lib` and `config` as the driver sees them."""
    main = lib / "apkfarm/build/driver/main.py"
    return [python, "-I", "-S", "-B", "-u", str(main), str(config), str(control_fd), str(ack_fd)]


def _base_environment(paths: BuildPaths, source_date_epoch: int) -> dict[str, str]:
    """What every command of the build starts from: nothing of the builder's own."""
    sysroot = paths.sysroot
    return {
        "PATH": "/usr/bin:/usr/sbin:/bin:/sbin",
        "HOME": paths.tmpdir,
        "TMPDIR": paths.tmpdir,
        "SHELL": "/bin/sh",
        "USER": "build",
        "LOGNAME": "build",
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        "PYTHONDONTWRITEBYTECODE": "1",
        # pkg-config sees the farm's packages in the sysroot and nothing of the build root
        "PKG_CONFIG_LIBDIR": f"{sysroot}/usr/lib/pkgconfig:{sysroot}/usr/share/pkgconfig",
        "PKG_CONFIG_SYSROOT_DIR": sysroot,
    }


def _prepare_work_dir(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise BuildError(f"work directory {work} is not empty")
    # Only the builder reaches into it; the sandbox sees its own binds.
    work.chmod(0o700)


def _match_sources(template: Template, given: Mapping[str, Path]) -> list[_Source]:
    """The template's sources as local files, in order, each checked against its sha256."""
    where = template.full_name
    try:
        sources = template_sources(template)
    except SourceError as error:
        raise BuildError(f"{where}: {error}") from error
    out: list[_Source] = []
    for source in sources:
        filename = source.entry.filename
        path = given.get(filename)
        if path is None:
            raise BuildError(f"{where}: source {filename} was not provided to the build")
        if not path.is_file():
            raise BuildError(f"{where}: source {filename}: {path} is not a file")
        with path.open("rb") as stream:
            actual = hashlib.file_digest(stream, "sha256").hexdigest()
        if actual != source.sha256.lower():
            raise BuildError(
                f"{where}: source {filename} has sha256 {actual}, the template says {source.sha256}"
            )
        out.append(_Source(filename, path, source.sha256, source.entry.extract))
    return out


def _chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(directory, name), uid, uid)  # noqa: PTH118


def remove_work_dir(path: Path) -> None:
    """Remove a build's work directory, even the parts a build made unwritable.

    As root ``shutil.rmtree`` would do; an unprivileged builder needs write
    permission on each directory first.
    """

    def retry(function: Any, failed: str, error: BaseException) -> None:
        parent = Path(failed).parent
        parent.chmod(parent.stat().st_mode | 0o700)
        target = Path(failed)
        if target.is_dir() and not target.is_symlink():
            target.chmod(0o700)
            shutil.rmtree(target, onexc=retry)
        else:
            target.unlink(missing_ok=True)

    if path.exists():
        shutil.rmtree(path, onexc=retry)


async def run_build(
    request: BuildRequest, log: BuildLog, *, settings: BuilderSettings | None = None
) -> BuildResult:
    """Build `request` in the sandbox (see the module docstring); raises BuildFailed."""
    return await Builder(settings).build(request, log)


async def run_build_unsandboxed_for_benchmark(
    request: BuildRequest, log: BuildLog, *, settings: BuilderSettings | None = None
) -> BuildResult:
    """The benchmark's baseline: the same build without the sandbox (examples tree only)."""
    return await Builder(settings).build_unsandboxed_for_benchmark(request, log)
