"""The package writer, signing split and assembly: determinism, tree features, refusals."""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import stat
import threading
from pathlib import Path

import pytest
from apk_support import (
    VECTOR_PRIVATE,
    VECTOR_PUBLIC,
    header_fields,
    identity,
    independent_members,
    tar_file_content,
    tar_members,
    write_tree,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apkfarm.apk.assemble import (
    assemble_from_unsigned,
    signature_member,
    split_unsigned_package,
    write_signed_package,
)
from apkfarm.apk.errors import ApkSignatureError, PackageInputError
from apkfarm.apk.gzip_members import (
    CHUNK,
    DEFAULT_DATA_COMPRESSION,
    GZIP_HEADER,
    DataCompression,
)
from apkfarm.apk.keys import Keyring, generate_key_pair
from apkfarm.apk.package import UnsignedPackage, build_package
from apkfarm.apk.pkginfo import PkgInfo
from apkfarm.apk.reader import PackageContents, read_control_member, verify_package
from apkfarm.apk.signing import LocalKeySigner, SignatureAlgorithm, SignatureFile

INFO = PkgInfo(
    pkgname="demo",
    pkgver="1.2.3-r4",
    arch="x86_64",
    pkgdesc="A demonstration package",
    url="https://example.org/demo",
    builddate=1_700_000_000,
    packager="Demo <demo@example.org>",
    origin="demo",
    commit="f" * 40,
    maintainer="Demo <demo@example.org>",
    license="BSD-2-Clause",
    depends=("so:libc.musl-x86_64.so.1", "demo-common>=1.2"),
    provides=("cmd:demo=1.2.3-r4", "so:libdemo.so.1=1"),
    install_if=("demo-base", "bash-completion"),
    replaces=("olddemo", "demo-legacy<1.0"),
    replaces_priority=10,
    provider_priority=100,
    triggers=("/usr/share/demo/*", "/etc/demo.d"),
)
SCRIPTS = {"post-install": b"#!/bin/sh\necho installed\n", "trigger": b"#!/bin/sh\n"}


@pytest.fixture(scope="module")
def signer(vectors: Path) -> LocalKeySigner:
    return LocalKeySigner(vectors / "apk" / "keys" / VECTOR_PRIVATE)


@pytest.fixture(scope="module")
def keyring(vectors: Path) -> Keyring:
    return Keyring.from_files([vectors / "apk" / "keys" / VECTOR_PUBLIC])


def make_tree(root: Path) -> Path:
    root.mkdir()
    write_tree(
        root,
        {
            "usr/bin/demo": b"#!/bin/sh\necho demo\n",
            "usr/lib/libdemo.so.1": b"\x7fELF" + bytes(3000),
            "usr/share/demo/data.txt": b"data\n" * 100,
            "etc/demo.conf": b"setting = 1\n",
        },
    )
    os.chmod(root / "usr/bin/demo", 0o755)
    os.chmod(root / "etc/demo.conf", 0o600)
    (root / "usr/lib/libdemo.so").symlink_to("libdemo.so.1")
    (root / "var/empty").mkdir(parents=True)
    os.chmod(root / "var/empty", 0o750)
    os.link(root / "usr/bin/demo", root / "usr/bin/demo-again")
    return root


def signed(unsigned: UnsignedPackage, signers: list[LocalKeySigner]) -> bytes:
    out = io.BytesIO()
    size = write_signed_package(out, unsigned, signers)
    assert size == len(out.getvalue())
    return out.getvalue()


def build_signed(
    root: Path, signer: LocalKeySigner, info: PkgInfo = INFO, **kwargs: object
) -> bytes:
    with build_package(root, info, scripts=SCRIPTS, **kwargs) as unsigned:  # type: ignore[arg-type]
        return signed(unsigned, [signer])


def test_two_builds_of_the_same_tree_are_byte_identical(
    tmp_path: Path, signer: LocalKeySigner
) -> None:
    first = build_signed(make_tree(tmp_path / "a"), signer)
    second_root = make_tree(tmp_path / "b")
    # Different mtimes and atimes in the second tree change nothing.
    for path in second_root.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_234_567_890, 1_234_567_890))
    assert build_signed(second_root, signer) == first


ENGINES = [DataCompression("isal", level) for level in range(4)]
ENGINES += [DataCompression("zlib", level) for level in (0, 1, 9)]


def bulky_tree(root: Path) -> Path:
    """``make_tree`` plus files that take the data tar over several compression chunks."""
    make_tree(root)
    rng = random.Random(11)
    words = [rng.randbytes(rng.randint(2, 8)).hex().encode() for _ in range(300)]
    text = b"\n".join(b" ".join(rng.choices(words, k=12)) for _ in range(20_000))
    write_tree(
        root,
        {"usr/share/demo/words.txt": text, "usr/lib/blob.bin": rng.randbytes(CHUNK) + text},
    )
    return root


@pytest.mark.parametrize("compression", ENGINES, ids=str)
def test_each_engine_gives_identical_bytes_that_verify(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring, compression: DataCompression
) -> None:
    first = build_signed(bulky_tree(tmp_path / "a"), signer, compression=compression)
    second_root = bulky_tree(tmp_path / "b")
    for path in second_root.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_234_567_890, 1_234_567_890))
    assert build_signed(second_root, signer, compression=compression) == first

    contents = verify_package(io.BytesIO(first), keyring, source=str(compression))
    members = independent_members(first)
    assert len(members[2].raw) > 3 * CHUNK
    assert members[2].compressed[:10] == GZIP_HEADER
    assert contents.info.datahash == hashlib.sha256(members[2].compressed).hexdigest()
    assert contents.identity == identity(members[1].compressed)
    # Engines change the compressed bytes only: the tar inside is the default engine's.
    default = independent_members(build_signed(second_root, signer))
    assert members[2].raw == default[2].raw
    assert (members[2].compressed == default[2].compressed) == (
        compression == DEFAULT_DATA_COMPRESSION
    )


def test_a_refusal_in_the_middle_of_the_tree_stops_the_compressor(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write_tree(root, {"a/big.bin": random.Random(1).randbytes(3 * CHUNK)})
    (root / "b").mkdir()
    os.mkfifo(root / "b/pipe")
    with pytest.raises(PackageInputError, match="b/pipe: is a fifo"):
        build_package(root, INFO, scripts=SCRIPTS)
    assert [t for t in threading.enumerate() if t.name == "apk-deflate"] == []


def test_metadata_round_trips_and_identity_and_datahash_recompute(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring
) -> None:
    root = make_tree(tmp_path / "tree")
    with build_package(root, INFO, scripts=SCRIPTS) as unsigned:
        data = signed(unsigned, [signer])
        expected_info = unsigned.info
        assert unsigned.identity == identity(unsigned.control_member)
    contents = verify_package(io.BytesIO(data), keyring, source="demo")
    members = independent_members(data)
    assert contents.info == expected_info
    assert contents.identity == identity(members[1].compressed)
    assert contents.info.datahash == hashlib.sha256(members[2].compressed).hexdigest()
    # installed size: regular file contents, the hard link counted once
    sizes = [20, 3004, 500, 12]
    assert contents.info.size == sum(sizes)
    assert contents.scripts == (".post-install", ".trigger")
    pkginfo = tar_file_content(members[1].raw, ".PKGINFO").decode()
    assert "triggers = /usr/share/demo/* /etc/demo.d\n" in pkginfo
    assert pkginfo.count("depend = ") == 2 and pkginfo.count("replaces = ") == 2
    assert "install_if = demo-base bash-completion\n" in pkginfo
    assert pkginfo.endswith(f"datahash = {contents.info.datahash}\n")
    assert PkgInfo.parse(pkginfo.encode()) == expected_info


def test_tree_features_are_encoded_as_apk_expects(tmp_path: Path, signer: LocalKeySigner) -> None:
    root = make_tree(tmp_path / "tree")
    data = build_signed(root, signer)
    entries = {i.name: i for i in tar_members(independent_members(data)[2].raw)}
    assert list(entries) == [
        "etc",
        "etc/demo.conf",
        "usr",
        "usr/bin",
        "usr/bin/demo",
        "usr/bin/demo-again",
        "usr/lib",
        "usr/lib/libdemo.so",
        "usr/lib/libdemo.so.1",
        "usr/share",
        "usr/share/demo",
        "usr/share/demo/data.txt",
        "var",
        "var/empty",
    ]
    for info in entries.values():
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "root", "root")
        assert info.mtime == INFO.builddate
    assert entries["etc/demo.conf"].mode == 0o600
    assert entries["usr/bin/demo"].mode == 0o755
    assert entries["var/empty"].isdir() and entries["var/empty"].mode == 0o750
    link = entries["usr/bin/demo-again"]
    assert link.islnk() and link.linkname == "usr/bin/demo"
    assert "APK-TOOLS.checksum.SHA1" not in link.pax_headers
    symlink = entries["usr/lib/libdemo.so"]
    assert symlink.issym() and symlink.linkname == "libdemo.so.1"
    assert (
        symlink.pax_headers["APK-TOOLS.checksum.SHA1"] == hashlib.sha1(b"libdemo.so.1").hexdigest()
    )
    demo = entries["usr/bin/demo"]
    assert (
        demo.pax_headers["APK-TOOLS.checksum.SHA1"]
        == hashlib.sha1((root / "usr/bin/demo").read_bytes()).hexdigest()
    )
    assert "APK-TOOLS.checksum.SHA1" not in entries["usr"].pax_headers
    # Directory names carry the trailing slash in the header itself, as GNU tar writes.
    raw = independent_members(data)[2].raw
    assert raw[:4] == b"etc/"


def test_long_paths_and_link_targets_use_pax_records(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring
) -> None:
    root = tmp_path / "tree"
    deep = "usr/share/" + "/".join(["a-rather-long-directory-name"] * 5)
    write_tree(root, {f"{deep}/file-with-a-long-name.txt": b"deep\n"})
    target = "../" * 3 + "x" * 120
    (root / "usr/share/far").symlink_to(target)
    data = build_signed(root, signer)
    names = {i.name: i for i in tar_members(independent_members(data)[2].raw)}
    long_name = f"{deep}/file-with-a-long-name.txt"
    assert len(long_name.encode()) > 100
    assert long_name in names and names[long_name].pax_headers["path"] == long_name
    assert names["usr/share/far"].linkname == target
    contents = verify_package(io.BytesIO(data), keyring)
    assert contents.file_count == len(names)


def test_large_files_stream_through(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring
) -> None:
    root = tmp_path / "tree"
    blob = os.urandom(3 << 20)  # larger than the read-once threshold
    write_tree(root, {"big.bin": blob})
    data = build_signed(root, signer)
    contents = verify_package(io.BytesIO(data), keyring)
    assert contents.info.size == len(blob)
    assert tar_file_content(independent_members(data)[2].raw, "big.bin") == blob


def test_undeclared_setuid_is_refused_and_declared_setuid_kept(
    tmp_path: Path, signer: LocalKeySigner
) -> None:
    root = tmp_path / "tree"
    write_tree(root, {"usr/bin/su": b"#!/bin/sh\n"})
    os.chmod(root / "usr/bin/su", 0o4755)
    with pytest.raises(
        PackageInputError,
        match=r"package demo: usr/bin/su: has the setuid/setgid bit \(mode 4755\)",
    ):
        build_package(root, INFO, scripts=SCRIPTS)
    data = build_signed(root, signer, allowed_setuid={"/usr/bin/su"})
    entry = tar_members(independent_members(data)[2].raw)[-1]
    assert (entry.name, entry.mode) == ("usr/bin/su", 0o4755)
    os.chmod(root / "usr/bin/su", 0o2755)
    with pytest.raises(PackageInputError, match="setuid/setgid"):
        build_package(root, INFO, scripts=SCRIPTS, allowed_setuid={"usr/bin/other"})


def test_special_files_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(
        PackageInputError, match="pipe: is a fifo; special files cannot be packaged"
    ):
        build_package(root, INFO, scripts=SCRIPTS)
    (root / "pipe").unlink()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))
        with pytest.raises(PackageInputError, match="sock: is a socket"):
            build_package(root, INFO, scripts=SCRIPTS)
    finally:
        sock.close()


def test_script_and_trigger_rules(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    with pytest.raises(PackageInputError, match="unknown install script 'post-remove'"):
        build_package(root, INFO, scripts={"post-remove": b"", "trigger": b""})
    with pytest.raises(PackageInputError, match="no trigger script"):
        build_package(root, INFO, scripts={})
    plain = PkgInfo(pkgname="x", pkgver="1-r0", arch="noarch")
    with pytest.raises(PackageInputError, match="needs the trigger paths"):
        build_package(root, plain, scripts={".trigger": b""})
    with pytest.raises(PackageInputError, match="SOURCE_DATE_EPOCH 8589934592 is outside"):
        build_package(root, PkgInfo(pkgname="x", pkgver="1-r0", arch="noarch", builddate=8**11))
    with pytest.raises(PackageInputError, match="line break"):
        build_package(root, PkgInfo(pkgname="x", pkgver="1-r0", arch="noarch", pkgdesc="a\nb"))


def test_empty_package_has_only_an_end_of_archive(
    tmp_path: Path, keyring: Keyring, signer: LocalKeySigner
) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    meta = PkgInfo(pkgname="meta", pkgver="1-r0", arch="noarch", depends=("a", "b"))
    with build_package(root, meta) as unsigned:
        data = signed(unsigned, [signer])
    assert independent_members(data)[2].raw == bytes(1024)
    contents = verify_package(io.BytesIO(data), keyring)
    assert contents.file_count == 0 and contents.info.depends == ("a", "b")


def test_signing_split_gives_the_same_package(tmp_path: Path, signer: LocalKeySigner) -> None:
    root = make_tree(tmp_path / "tree")
    with build_package(root, INFO, scripts=SCRIPTS) as unsigned:
        direct = signed(unsigned, [signer])
        upload = io.BytesIO()
        assert unsigned.write_unsigned(upload) == unsigned.unsigned_size
    upload.seek(0)
    split = split_unsigned_package(upload)
    # The signer receives only the control member; it can parse and check it.
    assert read_control_member(split.control_member).pkgname == "demo"
    signature = signer.sign(split.control_member)
    assert signature.name == ".SIGN.RSA256." + VECTOR_PUBLIC
    out = io.BytesIO()
    assemble_from_unsigned(out, [signature], split, upload)
    assert out.getvalue() == direct


def test_several_signatures_for_key_rotation(tmp_path: Path, signer: LocalKeySigner) -> None:
    pair = generate_key_pair(tmp_path / "keys", "new@example.org", now=0x65000000)
    new_signer = LocalKeySigner(pair.private_path, algorithm=SignatureAlgorithm.RSA)
    root = make_tree(tmp_path / "tree")
    with build_package(root, INFO, scripts=SCRIPTS) as unsigned:
        data = signed(unsigned, [signer, new_signer])
    names = [i.name for i in tar_members(independent_members(data)[0].raw)]
    assert names == [".SIGN.RSA256." + VECTOR_PUBLIC, ".SIGN.RSA.new@example.org-65000000.rsa.pub"]
    # Only the new key trusted: its SHA-1 signature is the one checked.
    contents = verify_package(io.BytesIO(data), Keyring.from_files([pair.public_path]))
    assert contents.signature is not None
    assert contents.signature.algorithm is SignatureAlgorithm.RSA
    # Both trusted: the first signature by a trusted key is used, as apk does.
    both = Keyring({**Keyring.from_files([pair.public_path]), VECTOR_PUBLIC: signer.public_key})
    contents = verify_package(io.BytesIO(data), both)
    assert contents.signature is not None
    assert contents.signature.key_name == VECTOR_PUBLIC


def test_signature_member_checks_what_it_is_given() -> None:
    with pytest.raises(ApkSignatureError, match="unknown signature type 'DSA2'"):
        signature_member([SignatureFile(".SIGN.DSA2.k.rsa.pub", b"x")])
    with pytest.raises(ApkSignatureError, match="given twice"):
        signature_member([SignatureFile(".SIGN.RSA.k", b"x"), SignatureFile(".SIGN.RSA.k", b"y")])
    with pytest.raises(ApkSignatureError, match="no signatures"):
        signature_member([])


def test_verifying_needs_no_private_key(tmp_path: Path, signer: LocalKeySigner) -> None:
    """Producing the unsigned package and reading it back work without any key."""
    root = make_tree(tmp_path / "tree")
    with build_package(root, INFO, scripts=SCRIPTS) as unsigned:
        upload = io.BytesIO()
        unsigned.write_unsigned(upload)
    contents = verify_package(io.BytesIO(upload.getvalue()), None)
    assert isinstance(contents, PackageContents) and contents.signature is None
    assert contents.signature_files == ()


# ----------------------------------------------------------------------------- properties

NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-+", min_size=1, max_size=30
).filter(lambda n: n not in (".", ".."))
TREES = st.dictionaries(
    st.lists(NAMES, min_size=1, max_size=4).map("/".join),
    st.binary(max_size=2000),
    max_size=8,
)
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:._<>=+-", min_size=1, max_size=20)


@st.composite
def pkginfos(draw: st.DrawFn) -> PkgInfo:
    return PkgInfo(
        pkgname=draw(st.from_regex(r"[a-z0-9][a-z0-9_.+-]{0,20}", fullmatch=True)),
        pkgver=draw(st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}-r[0-9]{1,2}", fullmatch=True)),
        arch=draw(st.sampled_from(["x86_64", "aarch64", "noarch"])),
        pkgdesc=draw(
            st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=60)
        ),
        builddate=draw(st.integers(0, 8**11 - 1)),
        depends=tuple(draw(st.lists(WORDS, max_size=4))),
        provides=tuple(draw(st.lists(WORDS, max_size=3))),
        replaces=tuple(draw(st.lists(WORDS, max_size=2))),
        provider_priority=draw(st.none() | st.integers(0, 1000)),
        origin=draw(st.none() | WORDS),
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(info=pkginfos(), tree=TREES)
def test_property_build_then_read_round_trips(
    tmp_path_factory: pytest.TempPathFactory,
    signer: LocalKeySigner,
    keyring: Keyring,
    info: PkgInfo,
    tree: dict[str, bytes],
) -> None:
    root = tmp_path_factory.mktemp("tree")
    files: dict[str, bytes] = {}
    for name, content in tree.items():
        # a path may not be both a file and a directory
        if any(other.startswith(name + "/") for other in tree) or any(
            name.startswith(other + "/") for other in files
        ):
            continue
        files[name] = content
    write_tree(root, files)
    with build_package(root, info) as unsigned:
        data = signed(unsigned, [signer])
        built = unsigned.info
    contents = verify_package(io.BytesIO(data), keyring)
    assert contents.info == built
    assert contents.info.size == sum(len(c) for c in files.values())
    read_back = {
        i.name: tar_file_content(independent_members(data)[2].raw, i.name)
        for i in tar_members(independent_members(data)[2].raw)
        if i.isfile()
    }
    assert read_back == files
    assert PkgInfo.parse(built.render()) == built


@settings(max_examples=60, deadline=None)
@given(info=pkginfos())
def test_property_pkginfo_render_parse(info: PkgInfo) -> None:
    assert PkgInfo.parse(info.render()) == info


def test_header_fields_helper_sees_modes(tmp_path: Path, signer: LocalKeySigner) -> None:
    root = make_tree(tmp_path / "tree")
    data = build_signed(root, signer)
    fields = [header_fields(i) for i in tar_members(independent_members(data)[2].raw)]
    assert all(f[3:7] == (0, 0, "root", "root") for f in fields)
    assert stat.S_IMODE(0o750) in [f[2] for f in fields]
