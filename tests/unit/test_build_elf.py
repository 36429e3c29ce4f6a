"""apkfarm.build.elf against binaries compiled here, hand-made images and hostile bytes."""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import require

from apkfarm.build.elf import (
    ElfInfo,
    is_elf,
    machine_name,
    matches_arch,
    parse_elf,
    read_elf,
)
from apkfarm.build.errors import ElfError

# The library calls into libc so that --as-needed keeps a DT_NEEDED for it.
LIB_C = '#include <stdlib.h>\nint answer(void) { return getenv("NO_SUCH") ? 0 : 42; }\n'
MAIN_C = "int answer(void);\nint main(void) { return answer() == 42 ? 0 : 1; }\n"


def _compile(cc: str, tmp: Path, *, arch_tag: str) -> dict[str, Path]:
    """Build a shared library, a PIE, a non-PIE and (natively) a static program."""
    require(shutil.which(cc) is not None, f"{cc} is not installed")
    (tmp / "lib.c").write_text(LIB_C)
    (tmp / "main.c").write_text(MAIN_C)
    lib = tmp / f"libanswer-{arch_tag}.so.1.2.3"
    pie = tmp / f"pie-{arch_tag}"
    nopie = tmp / f"nopie-{arch_tag}"

    def run(*argv: str) -> None:
        subprocess.run([cc, *argv], check=True, cwd=tmp, capture_output=True)

    run("-shared", "-fPIC", "-Wl,-soname,libanswer.so.1", "-o", str(lib), "lib.c")
    (tmp / "libanswer.so").unlink(missing_ok=True)
    (tmp / "libanswer.so").symlink_to(lib.name)
    run(
        "-fPIE", "-pie", "-o", str(pie), "main.c", "-L.", "-lanswer",
        "-Wl,-rpath,/opt/answer/lib:$ORIGIN", "-Wl,--disable-new-dtags",
    )  # fmt: skip
    run(
        "-fno-PIE", "-no-pie", "-o", str(nopie), "main.c", "-L.", "-lanswer",
        "-Wl,-rpath,/opt/runpath", "-Wl,--enable-new-dtags",
    )  # fmt: skip
    out = {"lib": lib, "pie": pie, "nopie": nopie}
    if cc == "gcc":
        static = tmp / "static"
        (tmp / "static.c").write_text("int main(void) { return 0; }\n")
        run("-static", "-o", str(static), "static.c")
        out["static"] = static
        (tmp / "obj.c").write_text("int f(void) { return 1; }\n")
        run("-c", "-o", "obj.o", "obj.c")
        out["object"] = tmp / "obj.o"
    return out


def _readelf_dynamic(path: Path) -> tuple[str | None, list[str]]:
    """SONAME and NEEDED as binutils' readelf reports them (an independent reader)."""
    out = subprocess.run(
        ["readelf", "-dW", str(path)], check=True, capture_output=True, text=True
    ).stdout
    soname = None
    needed = []
    for line in out.splitlines():
        if "(SONAME)" in line:
            soname = line.split("[", 1)[1].rstrip("]")
        elif "(NEEDED)" in line:
            needed.append(line.split("[", 1)[1].rstrip("]"))
    return soname, needed


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _compile("gcc", tmp_path_factory.mktemp("native"), arch_tag="x86_64")


def test_native_shared_library(native: dict[str, Path]) -> None:
    info = read_elf(native["lib"])
    assert info is not None
    assert (info.bits, info.endian, info.machine_name) == (64, "little", "x86_64")
    assert info.elf_type == "DYN"
    assert info.soname == "libanswer.so.1"
    assert "libc.so.6" in info.needed
    assert info.is_shared_library and not info.is_pie and not info.is_static
    assert info.interpreter is None
    assert not info.textrel and not info.execstack
    assert matches_arch(info, "x86_64") and not matches_arch(info, "aarch64")


def test_native_pie_with_rpath(native: dict[str, Path]) -> None:
    info = read_elf(native["pie"])
    assert info is not None
    assert info.elf_type == "DYN" and info.is_pie and not info.is_shared_library
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert info.needed[0] == "libanswer.so.1"
    assert info.rpath == ("/opt/answer/lib", "$ORIGIN") and info.runpath == ()
    assert info.soname is None


def test_native_non_pie_with_runpath(native: dict[str, Path]) -> None:
    info = read_elf(native["nopie"])
    assert info is not None
    assert info.elf_type == "EXEC" and not info.is_pie and not info.is_static
    assert info.runpath == ("/opt/runpath",) and info.rpath == ()
    assert info.interpreter is not None


def test_native_static_and_object(native: dict[str, Path]) -> None:
    static = read_elf(native["static"])
    assert static is not None
    assert static.is_static and static.needed == () and static.interpreter is None
    obj = read_elf(native["object"])
    assert obj is not None
    assert obj.elf_type == "REL" and not obj.has_dynamic and not obj.is_static


@pytest.mark.parametrize("name", ["lib", "pie", "nopie"])
def test_dynamic_entries_agree_with_readelf(native: dict[str, Path], name: str) -> None:
    require(shutil.which("readelf") is not None, "readelf (binutils) is not installed")
    info = read_elf(native[name])
    assert info is not None
    soname, needed = _readelf_dynamic(native[name])
    assert info.soname == soname
    assert list(info.needed) == needed


def test_system_libc_is_read(tmp_path: Path) -> None:
    # A real toolchain library with many sections and symbol versions.
    libc = next(Path("/usr/lib").glob("*-linux-gnu*/libc.so.6"), None)
    require(libc is not None, "no glibc libc.so.6 under /usr/lib")
    assert libc is not None
    info = read_elf(libc.resolve())
    assert info is not None and info.soname == "libc.so.6"


def test_not_elf_and_symlinks_and_fifos_are_none(native: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\necho hi\n")
    assert read_elf(text) is None
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_elf(empty) is None
    link = native["lib"].parent / "libanswer.so"
    assert link.is_symlink()
    assert read_elf(link) is None  # a symlink is not the package's ELF file
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert read_elf(fifo) is None  # must not block waiting for a writer
    assert time.monotonic() - started < 5
    assert is_elf(native["lib"]) and not is_elf(text)


@pytest.mark.cross
@pytest.mark.parametrize(
    ("cc", "arch", "interp_prefix"),
    [
        ("aarch64-linux-gnu-gcc", "aarch64", "/lib/ld-linux-aarch64.so.1"),
        ("riscv64-linux-gnu-gcc", "riscv64", "/lib/ld-linux-riscv64-"),
    ],
)
def test_cross_compiled(tmp_path: Path, cc: str, arch: str, interp_prefix: str) -> None:
    built = _compile(cc, tmp_path, arch_tag=arch)
    lib = read_elf(built["lib"])
    pie = read_elf(built["pie"])
    assert lib is not None and pie is not None
    for info in (lib, pie):
        assert info.machine_name == arch
        assert matches_arch(info, arch) and not matches_arch(info, "x86_64")
        assert (info.bits, info.endian) == (64, "little")
    assert lib.soname == "libanswer.so.1" and lib.is_shared_library
    assert pie.is_pie and pie.interpreter is not None
    assert pie.interpreter.startswith(interp_prefix)
    assert pie.needed[0] == "libanswer.so.1"
    _soname, needed = _readelf_dynamic(built["pie"])
    assert list(pie.needed) == needed


# --- hand-made images: 32-bit, big-endian, and layouts compilers do not emit -------


@dataclass
class Image:
    """A minimal ELF image: one PT_LOAD over the file, PT_DYNAMIC, optional PT_INTERP."""

    bits: int = 64
    endian: str = "<"
    machine: int = 62
    e_type: int = 3
    interp: str | None = None
    soname: str | None = None
    needed: list[str] = field(default_factory=list)
    runpath: str | None = None
    gnu_stack_flags: int | None = 6  # RW; None leaves PT_GNU_STACK out
    flags_1: int = 0

    def build(self) -> bytes:
        e = self.endian
        is64 = self.bits == 64
        ehsize = 64 if is64 else 52
        phent = 56 if is64 else 32
        strings = b"\0"
        offsets: dict[str, int] = {}
        for s in [*self.needed, self.soname, self.runpath, self.interp]:
            if s is not None and s not in offsets:
                offsets[s] = len(strings)
                strings += s.encode() + b"\0"
        dyn: list[tuple[int, int]] = [(1, offsets[n]) for n in self.needed]
        if self.soname is not None:
            dyn.append((14, offsets[self.soname]))
        if self.runpath is not None:
            dyn.append((29, offsets[self.runpath]))
        if self.flags_1:
            dyn.append((0x6FFFFFFB, self.flags_1))
        dyn += [(5, 0), (10, len(strings)), (0, 0)]  # STRTAB patched below
        phdrs = ["load", "dynamic"]
        if self.interp is not None:
            phdrs.append("interp")
        if self.gnu_stack_flags is not None:
            phdrs.append("stack")
        ph_off = ehsize
        str_off = ph_off + phent * len(phdrs)
        dyn_off = str_off + len(strings)
        dyn_off += -dyn_off % 8
        dyn = [(t, str_off if t == 5 else v) for t, v in dyn]  # vaddr == offset
        dyn_fmt = e + ("qQ" if is64 else "iI")
        dyn_bytes = b"".join(struct.pack(dyn_fmt, t, v) for t, v in dyn)
        total = dyn_off + len(dyn_bytes)

        def phdr(p_type: int, flags: int, off: int, size: int) -> bytes:
            if is64:
                return struct.pack(e + "IIQQQQQQ", p_type, flags, off, off, off, size, size, 8)
            return struct.pack(e + "IIIIIIII", p_type, off, off, off, size, size, flags, 4)

        ph = b""
        for kind in phdrs:
            if kind == "load":
                ph += phdr(1, 5, 0, total)
            elif kind == "dynamic":
                ph += phdr(2, 6, dyn_off, len(dyn_bytes))
            elif kind == "interp":
                assert self.interp is not None
                ph += phdr(3, 4, str_off + offsets[self.interp], len(self.interp) + 1)
            else:
                assert self.gnu_stack_flags is not None
                ph += phdr(0x6474E551, self.gnu_stack_flags, 0, 0)
        ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if e == "<" else 2, 1, 0]) + bytes(8)
        hdr_fmt = e + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH")
        header = ident + struct.pack(
            hdr_fmt, self.e_type, self.machine, 1, 0, ph_off, 0, 0, ehsize, phent,
            len(phdrs), 0, 0, 0,
        )  # fmt: skip
        image = header + ph + strings
        image += bytes(dyn_off - len(image)) + dyn_bytes
        assert len(image) == total
        return image


@pytest.mark.parametrize(
    ("bits", "endian", "machine", "expected"),
    [
        (64, ">", 21, "ppc64"),
        (64, "<", 21, "ppc64le"),
        (32, ">", 20, "ppc"),
        (32, "<", 3, "x86"),
        (32, "<", 40, "arm"),
        (64, ">", 22, "s390x"),
        (64, "<", 258, "loongarch64"),
        (32, "<", 243, "riscv32"),
    ],
)
def test_handmade_classes_and_byte_orders(
    bits: int, endian: str, machine: int, expected: str
) -> None:
    image = Image(
        bits=bits, endian=endian, machine=machine, soname="libx.so.2",
        needed=["liby.so.1", "libc.so"], runpath="/a:/b",
    ).build()  # fmt: skip
    info = parse_elf(image, "handmade")
    assert info.bits == bits
    assert info.endian == ("little" if endian == "<" else "big")
    assert info.machine_name == expected
    assert info.soname == "libx.so.2"
    assert info.needed == ("liby.so.1", "libc.so")
    assert info.runpath == ("/a", "/b")


def test_handmade_pie_flag_and_execstack() -> None:
    pie = parse_elf(Image(interp="/lib/ld.so", flags_1=0x08000000, needed=["libc.so"]).build())
    assert pie.is_pie and pie.interpreter == "/lib/ld.so" and not pie.execstack
    no_stack_note = parse_elf(Image(gnu_stack_flags=None).build())
    assert no_stack_note.execstack  # no PT_GNU_STACK: the kernel maps an executable stack
    exec_stack = parse_elf(Image(gnu_stack_flags=7).build())
    assert exec_stack.execstack


def test_machine_names_and_arch_match() -> None:
    assert machine_name(62, 64, "little") == "x86_64"
    assert machine_name(9999, 64, "little") == "unknown(9999)"
    info = parse_elf(Image(bits=64, endian=">", machine=21).build())
    assert matches_arch(info, "ppc64") and not matches_arch(info, "ppc64le")
    with pytest.raises(ElfError, match="unknown target architecture 'vax'"):
        matches_arch(info, "vax")


# --- hostile input -----------------------------------------------------------------


def _patch(image: bytes, offset: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(image)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


def test_hostile_specific_cases() -> None:
    good = Image(soname="libq.so.1", needed=["libc.so"], interp="/lib/ld.so").build()
    assert parse_elf(good).soname == "libq.so.1"
    cases = {
        # e_phoff far beyond the file
        "program header table": _patch(good, 32, "<Q", 1 << 40),
        # e_phnum = PN_XNUM with no section 0 to hold the real count
        "extended program header count": _patch(good, 56, "<H", 0xFFFF),
        # phentsize smaller than a program header
        "program header size": _patch(good, 54, "<H", 8),
        # unknown e_type
        "unknown e_type": _patch(good, 16, "<H", 0x77),
        # bad class byte
        "unknown class": good[:4] + b"\x09" + good[5:],
    }
    for expected, image in cases.items():
        with pytest.raises(ElfError, match=expected):
            parse_elf(image, "hostile")
    with pytest.raises(ElfError, match="not an ELF file"):
        parse_elf(b"\x7fELF", "short")
    with pytest.raises(ElfError, match="not an ELF file"):
        parse_elf(b"MZ" + bytes(100), "pe")


def test_hostile_strings() -> None:
    img = Image(soname="libq.so.1", needed=["libc.so"]).build()
    strsz_off = next(off for off, tag, _ in _iter_dynamic(img) if tag == 10)
    needed_at = 1  # Image puts the first DT_NEEDED string right after the leading NUL
    # DT_STRSZ ends the table inside "libc.so": the string has no terminator in it
    cut = _patch(img, strsz_off + 8, "<Q", needed_at + 3)
    with pytest.raises(ElfError, match="not terminated"):
        parse_elf(cut, "unterminated")
    bad_utf8 = img.replace(b"libq.so.1", b"lib\xff.so.1")
    with pytest.raises(ElfError, match="UTF-8"):
        parse_elf(bad_utf8, "utf8")


def _iter_dynamic(image: bytes) -> Iterator[tuple[int, int, int]]:
    """(file offset, tag, value) of each dynamic entry of a 64-bit LE Image."""
    phnum = struct.unpack_from("<H", image, 56)[0]
    for i in range(phnum):
        p_type, _f, p_off, _va, _pa, p_filesz = struct.unpack_from("<IIQQQQ", image, 64 + 56 * i)
        if p_type == 2:
            for off in range(p_off, p_off + p_filesz, 16):
                tag, val = struct.unpack_from("<qQ", image, off)
                yield off, tag, val


def test_hostile_dynamic_values() -> None:
    img = Image(soname="libq.so.1", needed=["libc.so"]).build()
    entries = list(_iter_dynamic(img))
    needed_off = next(off for off, tag, _ in entries if tag == 1)
    strtab_off = next(off for off, tag, _ in entries if tag == 5)
    beyond = _patch(img, needed_off + 8, "<Q", 1 << 50)
    with pytest.raises(ElfError, match="DT_NEEDED string offset"):
        parse_elf(beyond, "needed")
    unmapped = _patch(img, strtab_off + 8, "<Q", 1 << 45)
    with pytest.raises(ElfError, match="DT_STRTAB address"):
        parse_elf(unmapped, "strtab")
    no_strtab = _patch(img, strtab_off, "<q", 0x7000_0000)  # unknown tag instead of STRTAB
    with pytest.raises(ElfError, match="no DT_STRTAB"):
        parse_elf(no_strtab, "nostrtab")


def test_dynamic_without_null_terminator_is_bounded() -> None:
    img = Image(needed=["libc.so"]).build()
    last_off = list(_iter_dynamic(img))[-1][0]
    unterminated = _patch(img, last_off, "<qQ", 0x6000_0001, 0)  # DT_NULL -> unknown tag
    info = parse_elf(unterminated, "noterm")
    assert info.needed == ("libc.so",)


def test_truncations_never_read_out_of_bounds(native: dict[str, Path]) -> None:
    data = native["pie"].read_bytes()
    cut_points = sorted({*range(0, 4096, 7), *range(len(data) - 4096, len(data), 13)})
    outcomes = {"ok": 0, "error": 0}
    for cut in cut_points:
        try:
            parse_elf(data[:cut], f"cut@{cut}")
            outcomes["ok"] += 1
        except ElfError:
            outcomes["error"] += 1
    # Cutting inside the headers must be refused; a cut in trailing section
    # data the loader never reads may still parse.
    assert outcomes["error"] > 0


def test_random_mutations_parse_or_refuse(native: dict[str, Path]) -> None:
    rng = random.Random(4)
    seeds = [native["lib"].read_bytes(), Image(soname="a", needed=["b"], bits=32).build()]
    started = time.monotonic()
    results: list[ElfInfo | None] = []
    for round_ in range(3000):
        data = bytearray(rng.choice(seeds))
        # mutate the headers and tables the reader walks, where damage matters
        hot = min(len(data), 4096)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(hot)
            data[pos] = rng.randrange(256)
        try:
            results.append(parse_elf(bytes(data), f"mutant-{round_}"))
        except ElfError:
            results.append(None)
    assert time.monotonic() - started < 60
    assert any(r is None for r in results) and any(r is not None for r in results)


def test_read_elf_on_truncated_file(native: dict[str, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(native["lib"].read_bytes()[:200])
    with pytest.raises(ElfError, match=r"truncated\.so: malformed ELF"):
        read_elf(truncated)
