"""Read what the dynamic loader reads from an ELF file, in pure Python.

The builder scans every file of a staged package: SONAMEs become ``so:``
provides, DT_NEEDED entries become ``so:`` dependencies, the machine type is
checked against the target architecture. Package contents are untrusted
input, so the reader checks every offset and count against the file before
it reads, bounds every loop by the size of what it walks, and raises
:class:`ElfError` (naming the file and the field) instead of reading out of
bounds or hanging.

The dynamic section is found through the program headers (``PT_DYNAMIC``),
as the loader does, and its string table (``DT_STRTAB``, a virtual address)
is mapped to a file offset through the ``PT_LOAD`` segments; a section
header whose address matches is the fallback for odd linkers.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
from collections.abc import Buffer
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from apkfarm.build.errors import ElfError

MAGIC = b"\x7fELF"
_IDENT_SIZE = 16

ElfType = Literal["NONE", "REL", "EXEC", "DYN", "CORE"]
Endian = Literal["little", "big"]

# e_type
ET_NONE, ET_REL, ET_EXEC, ET_DYN, ET_CORE = 0, 1, 2, 3, 4
_TYPE_NAMES: dict[int, ElfType] = {
    ET_NONE: "NONE",
    ET_REL: "REL",
    ET_EXEC: "EXEC",
    ET_DYN: "DYN",
    ET_CORE: "CORE",
}

# p_type
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
PT_GNU_STACK = 0x6474E551
PF_X = 0x1
PN_XNUM = 0xFFFF

# sh_type
SHT_STRTAB, SHT_DYNAMIC = 3, 6

# d_tag
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH = 0, 1, 5, 10, 14, 15
DT_TEXTREL, DT_RUNPATH, DT_FLAGS = 22, 29, 30
DT_FLAGS_1 = 0x6FFFFFFB
DF_TEXTREL = 0x4
DF_1_PIE = 0x08000000

# e_machine values we name. Where one e_machine covers several apk
# architectures, class and byte order decide (see machine_name()).
EM_386, EM_PPC, EM_PPC64, EM_S390, EM_ARM = 3, 20, 21, 22, 40
EM_SPARCV9, EM_X86_64, EM_AARCH64, EM_RISCV, EM_LOONGARCH = 43, 62, 183, 243, 258
EM_MIPS = 8

# An interpreter path longer than this is not a path the kernel accepts.
_MAX_INTERP = 4096


@dataclass(frozen=True)
class _Layout:
    """struct formats for one class; byte order is prefixed when used."""

    header: str
    phdr: str
    shdr: str
    dyn: str


# Header fields after e_ident: type, machine, version, entry, phoff, shoff,
# flags, ehsize, phentsize, phnum, shentsize, shnum, shstrndx.
_LAYOUT32 = _Layout(header="HHIIIIIHHHHHH", phdr="IIIIIIII", shdr="IIIIIIIIII", dyn="iI")
_LAYOUT64 = _Layout(header="HHIQQQIHHHHHH", phdr="IIQQQQQQ", shdr="IIQQQQIIQQ", dyn="qQ")


@dataclass(frozen=True)
class ElfInfo:
    """What matters about one ELF file for packaging.

    ``bits`` is 32 or 64; ``machine`` the raw ``e_machine``; ``machine_name``
    the apk-style architecture name (``x86_64``, ``aarch64``, ``riscv64``,
    ``ppc64le``, …) or ``unknown(N)``. ``rpath``/``runpath`` are the
    colon-separated entries. ``has_dynamic`` is true when the file has a
    ``PT_DYNAMIC`` segment.
    """

    bits: int
    endian: Endian
    osabi: int
    elf_type: ElfType
    machine: int
    machine_name: str
    interpreter: str | None
    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    has_dynamic: bool
    pie_flag: bool
    textrel: bool
    execstack: bool

    @property
    def is_pie(self) -> bool:
        """A position-independent executable (not a shared library)."""
        if self.elf_type != "DYN":
            return False
        # DF_1_PIE is what modern linkers write; an ET_DYN with an interpreter
        # and no SONAME is what older ones leave for a PIE.
        return self.pie_flag or (self.interpreter is not None and self.soname is None)

    @property
    def is_shared_library(self) -> bool:
        return self.elf_type == "DYN" and not self.is_pie

    @property
    def is_static(self) -> bool:
        """An executable or library linked without the dynamic loader (incl. static PIE)."""
        if self.elf_type not in ("EXEC", "DYN"):
            return False
        if not self.has_dynamic:
            return True
        return self.is_pie and self.interpreter is None and not self.needed


def machine_name(machine: int, bits: int, endian: Endian) -> str:
    """The apk architecture name for an ELF machine, class and byte order."""
    little = endian == "little"
    match machine:
        case 62:
            return "x86_64"
        case 3:
            return "x86"
        case 183:
            return "aarch64"
        case 40:
            return "arm"
        case 243:
            return "riscv64" if bits == 64 else "riscv32"
        case 21:
            return "ppc64le" if little else "ppc64"
        case 20:
            return "ppcle" if little else "ppc"
        case 22:
            return "s390x" if bits == 64 else "s390"
        case 258:
            return "loongarch64" if bits == 64 else "loongarch32"
        case 8:
            prefix = "mips64" if bits == 64 else "mips"
            return f"{prefix}el" if little else prefix
        case 43:
            return "sparc64"
        case _:
            return f"unknown({machine})"


# apk architecture -> (e_machine, class, byte order) of its native ELF files.
ARCH_MACHINES: dict[str, tuple[int, int, Endian]] = {
    "x86_64": (EM_X86_64, 64, "little"),
    "x86": (EM_386, 32, "little"),
    "aarch64": (EM_AARCH64, 64, "little"),
    "armhf": (EM_ARM, 32, "little"),
    "armv7": (EM_ARM, 32, "little"),
    "riscv64": (EM_RISCV, 64, "little"),
    "ppc64le": (EM_PPC64, 64, "little"),
    "ppc64": (EM_PPC64, 64, "big"),
    "ppc": (EM_PPC, 32, "big"),
    "s390x": (EM_S390, 64, "big"),
    "loongarch64": (EM_LOONGARCH, 64, "little"),
}


def matches_arch(info: ElfInfo, arch: str) -> bool:
    """Whether ``info`` is a native file of the apk architecture ``arch``.

    Raises ``ElfError`` for an architecture this module does not know, so a
    typo in a profile is not silently treated as "everything is foreign".
    """
    try:
        machine, bits, endian = ARCH_MACHINES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCH_MACHINES))
        raise ElfError(f"unknown target architecture {arch!r} (known: {known})") from None
    return info.machine == machine and info.bits == bits and info.endian == endian


class _Reader:
    """Bounds-checked struct reads over one buffer, with the file's name for errors."""

    def __init__(self, data: memoryview, name: str, endian: Endian) -> None:
        self.data = data
        self.size = len(data)
        self.name = name
        self.prefix = "<" if endian == "little" else ">"

    def fail(self, what: str) -> ElfError:
        return ElfError(f"{self.name}: malformed ELF: {what}")

    def check_range(self, offset: int, length: int, what: str) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.fail(
                f"{what} at offset {offset} (+{length} bytes) is outside the file "
                f"({self.size} bytes)"
            )

    def unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        full = self.prefix + fmt
        self.check_range(offset, struct.calcsize(full), what)
        return struct.unpack_from(full, self.data, offset)

    def cstring(self, offset: int, limit: int, what: str) -> str:
        """A NUL-terminated string starting at ``offset`` that must end before ``limit``."""
        if offset < 0 or offset >= limit or limit > self.size:
            raise self.fail(f"{what} string offset {offset} is outside its table")
        end = bytes(self.data[offset:limit]).find(b"\0")
        if end < 0:
            raise self.fail(f"{what} string at offset {offset} is not terminated")
        raw = bytes(self.data[offset : offset + end])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} string at offset {offset} is not valid UTF-8") from None


@dataclass(frozen=True)
class _Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int


def parse_elf(data: Buffer, name: str = "<memory>") -> ElfInfo:
    """Parse an ELF image held in memory (bytes, a memoryview or an mmap).

    ``name`` is used in error messages. Raises ``ElfError`` when the bytes do
    not start with the ELF magic or are malformed.
    """
    with memoryview(data) as view:
        if view.format != "B" or view.ndim != 1:
            raise TypeError("parse_elf() needs a bytes-like buffer of unsigned bytes")
        return _parse(view, name)


def read_elf(path: Path | str, name: str | None = None) -> ElfInfo | None:
    """Parse the ELF file at ``path``; ``None`` if it does not start with the ELF magic.

    Symlinks are not followed (a symlink is not an ELF file of the package).
    Only regular files are read (a FIFO would block). The file is
    memory-mapped, so large binaries are not read whole. A ``str`` path
    spares the ``pathlib`` overhead when scanning thousands of files.
    """
    label = name if name is not None else str(path)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # a symlink: O_NOFOLLOW refused to open it
        raise ElfError(f"{label}: cannot open: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        head = os.pread(fd, len(MAGIC), 0)
        if head != MAGIC:
            return None
        size = st.st_size
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped, memoryview(mapped) as view:
            return _parse(view, label)
    finally:
        os.close(fd)


def is_elf(path: Path) -> bool:
    """Whether the regular file at ``path`` starts with the ELF magic."""
    try:
        with path.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _parse(view: memoryview, name: str) -> ElfInfo:
    size = len(view)
    if size < _IDENT_SIZE or bytes(view[:4]) != MAGIC:
        raise ElfError(f"{name}: not an ELF file (no ELF magic)")
    ei_class, ei_data, ei_version, ei_osabi = view[4], view[5], view[6], view[7]
    if ei_class not in (1, 2):
        raise ElfError(f"{name}: malformed ELF: unknown class {ei_class}")
    if ei_data not in (1, 2):
        raise ElfError(f"{name}: malformed ELF: unknown data encoding {ei_data}")
    if ei_version != 1:
        raise ElfError(f"{name}: malformed ELF: unknown ident version {ei_version}")
    bits = 32 if ei_class == 1 else 64
    endian: Endian = "little" if ei_data == 1 else "big"
    layout = _LAYOUT32 if bits == 32 else _LAYOUT64
    r = _Reader(view, name, endian)

    (
        e_type,
        e_machine,
        _e_version,
        _e_entry,
        e_phoff,
        e_shoff,
        _e_flags,
        _e_ehsize,
        e_phentsize,
        e_phnum,
        e_shentsize,
        e_shnum,
        _e_shstrndx,
    ) = r.unpack(layout.header, _IDENT_SIZE, "ELF header")

    elf_type = _TYPE_NAMES.get(e_type)
    if elf_type is None:
        raise r.fail(f"unknown e_type {e_type:#x}")

    sections = _SectionTable(r, layout, e_shoff, e_shentsize, e_shnum)
    if e_phnum == PN_XNUM:
        # More program headers than fit in e_phnum: the real count is in
        # section 0's sh_info (ELF gABI "extended numbering").
        e_phnum = sections.first_info()
    segments = _read_segments(r, layout, e_phoff, e_phentsize, e_phnum)

    interpreter = None
    dynamic = None
    gnu_stack = None
    for seg in segments:
        if seg.type == PT_INTERP and interpreter is None:
            interpreter = _read_interp(r, seg)
        elif seg.type == PT_DYNAMIC and dynamic is None:
            dynamic = seg
        elif seg.type == PT_GNU_STACK and gnu_stack is None:
            gnu_stack = seg

    dyn = _read_dynamic(r, layout, dynamic, segments, sections) if dynamic else _Dynamic()

    # Without PT_GNU_STACK the kernel gives a loaded file an executable stack;
    # an object file has no program headers and no stack at all.
    execstack = bool(gnu_stack.flags & PF_X) if gnu_stack is not None else bool(segments)

    return ElfInfo(
        bits=bits,
        endian=endian,
        osabi=ei_osabi,
        elf_type=elf_type,
        machine=e_machine,
        machine_name=machine_name(e_machine, bits, endian),
        interpreter=interpreter,
        soname=dyn.soname,
        needed=tuple(dyn.needed),
        rpath=dyn.rpath,
        runpath=dyn.runpath,
        has_dynamic=dynamic is not None,
        pie_flag=dyn.pie_flag,
        textrel=dyn.textrel,
        execstack=execstack,
    )


class _SectionTable:
    """Lazy, bounds-checked access to section headers (used only as a fallback)."""

    def __init__(self, r: _Reader, layout: _Layout, offset: int, entsize: int, count: int) -> None:
        self.r = r
        self.layout = layout
        self.offset = offset
        self.entsize = entsize
        self.count = count
        need = struct.calcsize("<" + layout.shdr)
        if count and offset == 0:
            raise r.fail(f"{count} section headers declared at offset 0")
        if count and entsize < need:
            raise r.fail(f"section header size {entsize} is smaller than {need}")
        if count:
            r.check_range(offset, entsize * count, "section header table")

    def entry(self, index: int) -> tuple[int, ...]:
        return self.r.unpack(
            self.layout.shdr, self.offset + index * self.entsize, f"section header {index}"
        )

    def first_info(self) -> int:
        if self.count == 0:
            raise self.r.fail("extended program header count without section 0")
        return self.entry(0)[7]

    def strtab_at(self, vaddr: int) -> tuple[int, int] | None:
        """(file offset, size) of a SHT_STRTAB section loaded at ``vaddr``."""
        for index in range(self.count):
            _n, sh_type, _f, sh_addr, sh_offset, sh_size = self.entry(index)[:6]
            if sh_type == SHT_STRTAB and sh_addr == vaddr:
                return sh_offset, sh_size
        return None


def _read_segments(
    r: _Reader, layout: _Layout, offset: int, entsize: int, count: int
) -> list[_Segment]:
    if count == 0:
        return []
    need = struct.calcsize("<" + layout.phdr)
    if offset == 0:
        raise r.fail(f"{count} program headers declared at offset 0")
    if entsize < need:
        raise r.fail(f"program header size {entsize} is smaller than {need}")
    r.check_range(offset, entsize * count, "program header table")
    segments = []
    for index in range(count):
        fields = r.unpack(layout.phdr, offset + index * entsize, f"program header {index}")
        if layout is _LAYOUT32:
            p_type, p_offset, p_vaddr, _pa, p_filesz, _memsz, p_flags, _align = fields
        else:
            p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, _memsz, _align = fields
        segments.append(_Segment(p_type, p_flags, p_offset, p_vaddr, p_filesz))
    return segments


def _read_interp(r: _Reader, seg: _Segment) -> str:
    if seg.filesz == 0 or seg.filesz > _MAX_INTERP:
        raise r.fail(f"PT_INTERP size {seg.filesz} is not a plausible path length")
    r.check_range(seg.offset, seg.filesz, "PT_INTERP")
    return r.cstring(seg.offset, seg.offset + seg.filesz, "PT_INTERP")


@dataclass
class _Dynamic:
    soname: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    pie_flag: bool = False
    textrel: bool = False


def _read_dynamic(
    r: _Reader,
    layout: _Layout,
    seg: _Segment,
    segments: list[_Segment],
    sections: _SectionTable,
) -> _Dynamic:
    entsize = struct.calcsize("<" + layout.dyn)
    r.check_range(seg.offset, seg.filesz, "PT_DYNAMIC")
    needed_offsets: list[int] = []
    soname_off = rpath_off = runpath_off = None
    strtab_addr = strsz = None
    flags = flags_1 = 0
    textrel = False
    # The table ends at DT_NULL; the segment size bounds the walk either way.
    for index in range(seg.filesz // entsize):
        tag, val = r.unpack(layout.dyn, seg.offset + index * entsize, f"dynamic entry {index}")
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed_offsets.append(val)
        elif tag == DT_SONAME:
            soname_off = val
        elif tag == DT_RPATH:
            rpath_off = val
        elif tag == DT_RUNPATH:
            runpath_off = val
        elif tag == DT_STRTAB:
            strtab_addr = val
        elif tag == DT_STRSZ:
            strsz = val
        elif tag == DT_TEXTREL:
            textrel = True
        elif tag == DT_FLAGS:
            flags = val
        elif tag == DT_FLAGS_1:
            flags_1 = val

    result = _Dynamic(
        pie_flag=bool(flags_1 & DF_1_PIE),
        textrel=textrel or bool(flags & DF_TEXTREL),
    )
    wants_strings = needed_offsets or soname_off is not None
    wants_strings = wants_strings or rpath_off is not None or runpath_off is not None
    if not wants_strings:
        return result
    if strtab_addr is None:
        raise r.fail("dynamic section names strings but has no DT_STRTAB")
    table = _locate_strtab(r, strtab_addr, strsz, segments, sections)
    if table is None:
        raise r.fail(f"DT_STRTAB address {strtab_addr:#x} is not in any loaded segment")
    start, end = table

    def string(offset: int, what: str) -> str:
        return r.cstring(start + offset, end, what)

    result.needed = tuple(string(off, "DT_NEEDED") for off in needed_offsets)
    if soname_off is not None:
        result.soname = string(soname_off, "DT_SONAME") or None
    if rpath_off is not None:
        result.rpath = _path_list(string(rpath_off, "DT_RPATH"))
    if runpath_off is not None:
        result.runpath = _path_list(string(runpath_off, "DT_RUNPATH"))
    return result


def _locate_strtab(
    r: _Reader,
    vaddr: int,
    strsz: int | None,
    segments: list[_Segment],
    sections: _SectionTable,
) -> tuple[int, int] | None:
    """File range [start, end) of the dynamic string table."""
    for seg in segments:
        if seg.type == PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
            start = seg.offset + (vaddr - seg.vaddr)
            end = seg.offset + seg.filesz
            if strsz is not None:
                end = min(end, start + strsz)
            r.check_range(start, end - start, "DT_STRTAB")
            return start, end
    found = sections.strtab_at(vaddr)
    if found is None:
        return None
    start, size = found
    if strsz is not None:
        size = min(size, strsz)
    r.check_range(start, size, "DT_STRTAB section")
    return start, start + size


def _path_list(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.split(":") if part)
