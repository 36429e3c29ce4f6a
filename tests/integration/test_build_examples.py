"""The example tree built in the sandbox for x86_64, aarch64 and riscv64, as the farm would.

For each architecture, in dependency order: libgreet is built, its packages
are signed into a local farm repository, then greet (and the user
category's greet-fortune) are built against libgreet-devel installed from
that repository into the build's sysroot. The binaries are checked for
their machine type (``file`` and ``apkfarm.build.elf``) and run — natively,
or under ``qemu-<arch>-static -L /usr/<triplet>`` — from the signed
packages extracted into a directory. cmake (tally), meson (wordfreq), meta
(greet-tools) and an install script with an /etc file (greet-motd) are
built too. Each build takes about a second.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))

from build_support import (
    EXAMPLES,
    LocalRepo,
    build,
    pkginfo_of,
    request,
)
from fixtures.examples import ExampleDistfiles

from apkfarm.build.elf import matches_arch, read_elf
from apkfarm.build.log import LogLine, MemoryLog, PhaseFinished
from apkfarm.build.result import BuildResult
from apkfarm.build.runner import BuilderSettings
from apkfarm.profiles import BUILTIN_PROFILES

ARCHS = [
    pytest.param("x86_64", marks=pytest.mark.sandbox, id="x86_64"),
    pytest.param("aarch64", marks=[pytest.mark.sandbox, pytest.mark.cross], id="aarch64"),
    pytest.param("riscv64", marks=[pytest.mark.sandbox, pytest.mark.cross], id="riscv64"),
]
FILE_MACHINE = {"x86_64": "x86-64", "aarch64": "ARM aarch64", "riscv64": "RISC-V"}


@dataclass
class Farm:
    """One architecture's builds, in dependency order, sharing one signed repository."""

    arch: str
    root: Path
    distfiles: dict[str, Path]
    repo: LocalRepo
    count: int = 0

    def build(
        self, template: str, log: MemoryLog | None = None, settings: BuilderSettings | None = None
    ) -> BuildResult:
        self.count += 1
        work = self.root / f"work-{self.count}-{template.replace('/', '-')}"
        req = request(
            EXAMPLES,
            template,
            work,
            arch=self.arch,
            sources=self.distfiles,
            dependencies=self.repo.source(),
        )
        return build(req, log, settings)

    def staged(self, template: str) -> Path:
        """The destdir of the last build of `template` (the trees the packages were made from)."""
        works = sorted(self.root.glob(f"work-*-{template.replace('/', '-')}"))
        return works[-1] / "destdir"

    def run(self, program: Path, *args: str, library_root: Path | None = None) -> str:
        """Run a target program: natively, or under qemu with the cross C library."""
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
        libraries = str(library_root / "usr/lib") if library_root else None
        if self.arch == "x86_64":
            command = [str(program), *args]
            if libraries:
                env["LD_LIBRARY_PATH"] = libraries
        else:
            triplet = BUILTIN_PROFILES[self.arch].triplet
            command = [f"qemu-{self.arch}-static", "-L", f"/usr/{triplet}"]
            if libraries:
                command += ["-E", f"LD_LIBRARY_PATH={libraries}"]
            command += [str(program), *args]
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def _machine_checks(arch: str, path: Path) -> None:
    info = read_elf(path)
    assert info is not None and matches_arch(info, arch), (path, info)
    described = subprocess.run(
        ["file", "-b", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert FILE_MACHINE[arch] in described, described


@pytest.fixture(scope="module")
def farms(
    tmp_path_factory: pytest.TempPathFactory, example_distfiles: ExampleDistfiles
) -> dict[str, Farm]:
    class Farms(dict[str, Farm]):
        def __missing__(self, arch: str) -> Farm:
            root = tmp_path_factory.mktemp(f"farm-{arch}")
            farm = Farm(arch, root, example_distfiles.files, LocalRepo(root))
            self[arch] = farm
            return farm

    return Farms()


def _tools(arch: str) -> None:
    require(shutil.which("file") is not None, "file(1) is not installed")
    if arch != "x86_64":
        require(shutil.which(f"qemu-{arch}-static") is not None, f"qemu-{arch}-static is missing")


@pytest.mark.parametrize("arch", ARCHS)
def test_library_then_its_consumer_from_the_farm_repository(
    farms: dict[str, Farm], arch: str, tmp_path: Path
) -> None:
    _tools(arch)
    farm = farms[arch]
    library = farm.build("main/libgreet")
    assert [p.info.pkgname for p in library.packages] == ["libgreet", "libgreet-devel"]
    staged_library = farm.staged("main/libgreet") / "libgreet-1.0.0/usr/lib/libgreet.so.1.0.0"
    _machine_checks(arch, staged_library)
    library_files = farm.repo.publish(library)
    lib_info = pkginfo_of(farm.repo.read(library_files[0]))
    devel_info = pkginfo_of(farm.repo.read(library_files[1]))
    assert lib_info["provides"] == ["so:libgreet.so.1=1.0.0"]
    assert "pc:greet=1.0.0" in devel_info["provides"]
    assert "libgreet=1.0.0-r0" in devel_info["depends"]  # its .so symlink points into libgreet

    log = MemoryLog()
    program = farm.build("main/greet", log)
    # greet was linked against the farm's libgreet-devel, installed from the signed repository
    assert program.dependencies == ("libgreet-1.0.0-r0", "libgreet-devel-1.0.0-r0")
    assert any(
        isinstance(e, LogLine) and "installed libgreet-devel-1.0.0-r0 from main/" in e.text
        for e in log.events
    )
    check = next(e for e in log.events if isinstance(e, PhaseFinished) and e.phase == "check")
    # natively the check runs greet against the sysroot's libgreet; cross it is skipped
    assert check.status == ("ok" if arch == "x86_64" else "skipped")
    assert [p.info.pkgname for p in program.packages] == ["greet", "greet-man"]
    man = program.package("greet-man")
    assert man.auto and man.info.install_if == ("greet=1.0.0-r0", "base-man")
    program_files = farm.repo.publish(program)
    greet_info = pkginfo_of(farm.repo.read(program_files[0]))
    assert "so:libgreet.so.1" in greet_info["depends"]
    assert "cmd:greet=1.0.0-r0" in greet_info["provides"]

    root = tmp_path / "root"
    farm.repo.install([library_files[0], program_files[0]], root)
    greet = root / "usr/bin/greet"
    _machine_checks(arch, greet)
    assert farm.run(greet, "Ada", library_root=root) == "Hello, Ada!\n"
    assert farm.run(greet, "--version", library_root=root) == "greet 1.0.0 (libgreet 1.0.0)\n"


@pytest.mark.parametrize("arch", ARCHS)
def test_user_template_resolves_dependencies_through_main(
    farms: dict[str, Farm], arch: str, tmp_path: Path
) -> None:
    _tools(arch)
    farm = farms[arch]
    if not any(farm.repo.root.glob("main/*/libgreet-1.0.0-r0.apk")):
        farm.repo.publish(farm.build("main/libgreet"))
    fortune = farm.build("user/greet-fortune")
    assert fortune.dependencies == ("libgreet-1.0.0-r0", "libgreet-devel-1.0.0-r0")
    files = farm.repo.publish(fortune, category="user")
    root = tmp_path / "root"
    farm.repo.install([*farm.repo.root.glob("main/*/libgreet-1.0.0-r0.apk"), files[0]], root)
    about = farm.run(root / "usr/bin/greet-fortune", "--about", library_root=root)
    # the template's arch-conditional code ran for this target only
    note = "riscv64" if arch == "riscv64" else "generic"
    assert about.startswith("greet-fortune 1.0.0 (libgreet 1.0.0), built for ") and note in about


@pytest.mark.parametrize("arch", ARCHS)
def test_cmake_and_meson_programs(farms: dict[str, Farm], arch: str, tmp_path: Path) -> None:
    _tools(arch)
    farm = farms[arch]
    sample = EXAMPLES / "src/tally-1.0.0/tests/sample.txt"
    for template, program, args, expected in (
        ("main/tally", "tally", [str(sample)], f"lines=3 words=9 bytes=45 longest=19 {sample}\n"),
        (
            "main/wordfreq",
            "wordfreq",
            ["-n", "5", str(EXAMPLES / "src/wordfreq-1.0.0/tests/sample.txt")],
            (EXAMPLES / "src/wordfreq-1.0.0/tests/expected.txt").read_text(),
        ),
    ):
        log = MemoryLog()
        result = farm.build(template, log)
        check = next(e for e in log.events if isinstance(e, PhaseFinished) and e.phase == "check")
        assert check.status == ("ok" if arch == "x86_64" else "skipped")
        built = result.package(program)
        assert f"cmd:{program}=1.0.0-r0" in built.info.provides
        files = farm.repo.publish(result)
        root = tmp_path / program
        farm.repo.install(files, root)
        _machine_checks(arch, root / "usr/bin" / program)
        assert farm.run(root / "usr/bin" / program, *args) == expected


@pytest.mark.sandbox
def test_meta_package_and_install_script(farms: dict[str, Farm]) -> None:
    farm = farms["x86_64"]
    meta = farm.build("main/greet-tools")
    (tools,) = meta.packages
    assert tools.info.depends == ("greet", "tally", "wordfreq")
    assert tools.info.size == 0
    motd = farm.build("main/greet-motd")
    assert len(motd.packages) == 1
    path = farm.repo.publish(motd)[0]
    contents = farm.repo.read(path)
    assert contents.scripts == (".post-install",)
    assert "cmd:greet-motd=1.0.0-r0" in contents.info.provides
    assert "greet" in contents.info.depends
    staged = farm.staged("main/greet-motd") / "greet-motd-1.0.0"
    assert (staged / "etc/greet-motd.conf").is_file()  # allowed by options = ["etcfiles"]


@pytest.mark.parametrize("arch", ARCHS[1:])
def test_clang_cross_toolchain(farms: dict[str, Farm], arch: str, tmp_path: Path) -> None:
    """clang --target for the target; lld links aarch64, GNU ld riscv64 (lld 14 cannot)."""
    _tools(arch)
    require(shutil.which("clang") is not None, "clang is not installed")
    farm = farms[arch]
    log = MemoryLog()
    result = farm.build("main/wordfreq", log, BuilderSettings(compiler="clang"))
    cross_file = (
        farm.staged("main/wordfreq").parent / "builddir/.apkfarm/meson-cross.ini"
    ).read_text()
    assert f"c = ['{BUILTIN_PROFILES[arch].triplet}-clang']" in cross_file
    assert ("-fuse-ld=lld" in cross_file) == (arch == "aarch64")
    root = tmp_path / "root"
    # signed beside the repository: the clang build must not replace the published wordfreq
    farm.repo.install(farm.repo.sign(result, tmp_path / "files"), root)
    program = root / "usr/bin/wordfreq"
    _machine_checks(arch, program)
    sample = EXAMPLES / "src/wordfreq-1.0.0/tests/sample.txt"
    expected = (EXAMPLES / "src/wordfreq-1.0.0/tests/expected.txt").read_text()
    assert farm.run(program, "-n", "5", str(sample)) == expected
