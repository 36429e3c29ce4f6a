from pathlib import Path

import pytest

from apkfarm.services.common.jobtokens import (
    TokenIssuer,
    TokenRefused,
    TokenVerifier,
    generate_token_key,
    load_private_key,
    load_public_keys,
)
from apkfarm.v1 import common_pb2

TEMPLATE = common_pb2.TemplateRef(category="main", pkgname="greet", version="1.0-r0", arch="x86_64")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[TokenIssuer, TokenVerifier, Path]:
    private = tmp_path / "scheduler-jobtoken.key"
    public = generate_token_key(private)
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    issuer = TokenIssuer(load_private_key(private), ttl_seconds=60)
    return issuer, TokenVerifier(load_public_keys([public])), tmp_path


def test_a_genuine_token_yields_its_grant(keys: tuple[TokenIssuer, TokenVerifier, Path]) -> None:
    issuer, verifier, _ = keys
    token = issuer.issue("job-1", TEMPLATE, ["greet", "greet-doc"], attempt=2, now=1000)
    grant = verifier.verify(token, now=1010)
    assert grant.job_id == "job-1"
    assert list(grant.packages) == ["greet", "greet-doc"]
    assert grant.template == TEMPLATE
    assert grant.attempt == 2
    assert len(grant.token_id) == 32


def test_every_issue_has_a_fresh_token_id(keys: tuple[TokenIssuer, TokenVerifier, Path]) -> None:
    issuer, verifier, _ = keys
    first = verifier.verify(issuer.issue("job-1", TEMPLATE, ["greet"], 1))
    second = verifier.verify(issuer.issue("job-1", TEMPLATE, ["greet"], 1))
    assert first.token_id != second.token_id


def test_refusals(keys: tuple[TokenIssuer, TokenVerifier, Path]) -> None:
    issuer, verifier, tmp_path = keys
    token = issuer.issue("job-1", TEMPLATE, ["greet"], 1, now=1000)

    with pytest.raises(TokenRefused) as expired:
        verifier.verify(token, now=1060)
    assert expired.value.reason == "expired_token"

    # Widening the grant after signing breaks the signature.
    forged = common_pb2.JobToken()
    forged.CopyFrom(token)
    grant = common_pb2.JobGrant()
    grant.ParseFromString(token.grant)
    grant.packages.append("openssh")
    forged.grant = grant.SerializeToString()
    with pytest.raises(TokenRefused) as forged_refusal:
        verifier.verify(forged, now=1010)
    assert forged_refusal.value.reason == "forged_token"

    # A token from another scheduler key is not trusted.
    other = TokenIssuer(load_private_key(_other_key(tmp_path)))
    with pytest.raises(TokenRefused) as unknown:
        verifier.verify(other.issue("job-1", TEMPLATE, ["greet"], 1))
    assert unknown.value.reason == "unknown_token_key"

    with pytest.raises(TokenRefused) as missing:
        verifier.verify(common_pb2.JobToken())
    assert missing.value.reason == "missing_token"


def _other_key(tmp_path: Path) -> Path:
    path = tmp_path / "other.key"
    generate_token_key(path)
    return path
