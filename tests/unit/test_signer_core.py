"""The signer's policy on real packages, real tokens, real keys and a real audit chain."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from signer_support import TEMPLATE, Farm

from apkfarm.apk.assemble import signature_member
from apkfarm.apk.index import IndexRecord, index_content_member, render_apkindex
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import read_archive
from apkfarm.apk.signing import SignatureAlgorithm, verify_digest
from apkfarm.audit import verify_chain
from apkfarm.services.signer.core import SIGN_REFUSALS, SignRefused
from apkfarm.services.signer.keys import KeyFileError, SigningKeys
from apkfarm.services.signer.ledger import LEDGER_PREFIX
from apkfarm.v1 import common_pb2


@pytest.fixture
def farm(tmp_path: Path) -> Farm:
    return Farm(tmp_path)


def _refusal(
    farm: Farm, control: bytes, token: common_pb2.JobToken, requester: str = "builder-x86_64"
) -> str:
    before = len(farm.audit())
    with pytest.raises(SignRefused) as refused:
        farm.core.sign_package(control, token, requester)
    records = farm.audit()
    assert len(records) == before + 1, "every refusal leaves an audit record"
    assert b'"result":"refused"' in records[-1][1]
    return refused.value.reason


def test_a_job_gets_its_own_package_signed_with_the_primary_key(farm: Farm) -> None:
    control = farm.control()
    signed = farm.core.sign_package(control, farm.token(), "builder-x86_64")
    (signature,) = signed.signatures
    assert signature.name == f".SIGN.RSA256.{farm.new_key.key_name}"
    public = Keyring.from_files([farm.new_key.public_path])[farm.new_key.key_name]
    digest = hashlib.sha256(control).digest()
    assert verify_digest(public, SignatureAlgorithm.RSA256, signature.signature, digest)
    assert signed.audit_sequence == 1
    assert verify_chain(farm.audit()) == []
    assert hashlib.sha256(control).hexdigest().encode() in farm.audit()[0][1]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "openssh"}, "package_not_in_job"),
        ({"version": "1.1-r0"}, "version_mismatch"),
        ({"arch": "aarch64"}, "arch_mismatch"),
        ({"origin": "other"}, "origin_mismatch"),
    ],
)
def test_pkginfo_that_the_token_does_not_allow_is_refused(
    farm: Farm, change: dict[str, str], reason: str
) -> None:
    control = farm.control(**change)
    assert _refusal(farm, control, farm.token(packages=("greet",))) == reason
    # A refusal leaves no ledger entry and no signature.
    assert list(farm.store.list(LEDGER_PREFIX)) == []


def test_replays_and_different_content_are_refused(farm: Farm) -> None:
    token = farm.token()
    first = farm.control(text="one")
    farm.core.sign_package(first, token, "builder-x86_64")
    assert _refusal(farm, first, token) == "replayed_token"
    assert _refusal(farm, farm.control(text="two"), token) == "different_content"
    # A fresh token (a new attempt) may sign it again.
    farm.core.sign_package(farm.control(text="two"), farm.token(), "builder-x86_64")


def test_token_problems_are_refused(farm: Farm) -> None:
    control = farm.control()
    expired = farm.issuer.issue("job-1", TEMPLATE, ["greet"], 1, now=0)
    assert _refusal(farm, control, expired) == "expired_token"
    forged = farm.token()
    forged.signature = bytes(64)
    assert _refusal(farm, control, forged) == "forged_token"
    assert _refusal(farm, control, common_pb2.JobToken()) == "missing_token"


def test_a_builder_of_another_arch_is_refused(farm: Farm) -> None:
    assert _refusal(farm, farm.control(), farm.token(), "builder-aarch64") == "wrong_builder"


def test_a_digest_instead_of_a_control_member_is_refused(farm: Farm) -> None:
    digest = hashlib.sha256(farm.control()).digest()
    assert _refusal(farm, digest, farm.token()) == "malformed_package"


def test_refusals_are_counted_by_reason(farm: Farm) -> None:
    before = SIGN_REFUSALS.labels(reason="wrong_builder")._value.get()
    _refusal(farm, farm.control(), farm.token(), "builder-riscv64")
    assert SIGN_REFUSALS.labels(reason="wrong_builder")._value.get() == before + 1


def _index_member(arch: str) -> bytes:
    record = IndexRecord.parse(
        "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:greet\nV:1.0-r0\nA:" + arch + "\nS:100\nI:50\n"
        "T:Greeting program\nU:https://example.org\nL:MIT\n"
    )
    return index_content_member("main", render_apkindex([record]), mtime=0)


def test_an_index_is_signed_by_every_active_key(farm: Farm) -> None:
    member = _index_member("x86_64")
    signed = farm.core.sign_index(member, "main", "x86_64", "indexer")
    names = {s.name for s in signed.signatures}
    assert names == {
        f".SIGN.RSA256.{farm.old_key.key_name}",
        f".SIGN.RSA256.{farm.new_key.key_name}",
    }
    index = signature_member(list(signed.signatures)) + member
    for key in (farm.old_key, farm.new_key):
        read_archive(
            io.BytesIO(index), source="index", keyring=Keyring.from_files([key.public_path])
        )


def test_an_index_for_another_arch_or_garbage_is_refused(farm: Farm) -> None:
    with pytest.raises(SignRefused) as wrong:
        farm.core.sign_index(_index_member("aarch64"), "main", "x86_64", "indexer")
    assert wrong.value.reason == "arch_mismatch"
    with pytest.raises(SignRefused) as garbage:
        farm.core.sign_index(b"\x1f\x8b" + bytes(100), "main", "x86_64", "indexer")
    assert garbage.value.reason == "malformed_index"


def test_retired_keys_are_published_but_never_sign(farm: Farm, tmp_path: Path) -> None:
    retired = farm.keys_dir / "retired"
    retired.mkdir()
    farm.old_key.private_path.unlink()
    farm.old_key.public_path.rename(retired / farm.old_key.public_path.name)
    keys = SigningKeys(farm.keys_dir)
    assert [(k.name, k.active) for k in keys.published] == [
        (farm.new_key.key_name, True),
        (farm.old_key.key_name, False),
    ]
    assert [s.key_name for s in keys.active] == [farm.new_key.key_name]


def test_a_readable_key_file_stops_the_signer(farm: Farm) -> None:
    farm.new_key.private_path.chmod(0o644)
    with pytest.raises(KeyFileError) as error:
        SigningKeys(farm.keys_dir)
    assert str(farm.new_key.private_path) in str(error.value)
    assert "BEGIN" not in str(error.value)


def test_a_distribution_sized_index_is_signed(farm: Farm) -> None:
    records = [
        IndexRecord.parse(
            f"C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:package-number-{n}\nV:1.{n}-r0\nA:x86_64\n"
            f"S:100\nI:50\nT:Package number {n} of a large repository\nU:https://example.org\nL:MIT\n"
        )
        for n in range(15_000)
    ]
    text = render_apkindex(records)
    assert len(text) > 2 * 1024 * 1024  # beyond any small-member limit of the reader
    signed = farm.core.sign_index(
        index_content_member("main", text, mtime=0), "main", "x86_64", "indexer"
    )
    assert len(signed.signatures) == 2
