"""What the signer decides and does, without gRPC: check, sign, audit.

A package signature needs a job token that the scheduler signed, a caller
whose identity fits the token's arch, and a control member whose own
``.PKGINFO`` names a package, version and arch the token allows. An index
signature needs a content member that really is an index for the requested
arch. Every signature and every refusal becomes an audit record; refusals are
also counted by reason.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from apkfarm.apk.errors import ApkError
from apkfarm.apk.reader import (
    ArchiveKind,
    RawIndex,
    ReadLimits,
    read_archive,
    read_control_member,
)
from apkfarm.apk.signing import SignatureFile
from apkfarm.audit import AuditEntry, AuditLog
from apkfarm.errors import ApkfarmError
from apkfarm.services.common.jobtokens import TokenRefused, TokenVerifier
from apkfarm.services.common.logs import get_logger
from apkfarm.services.signer.keys import PublishedKey, SigningKeys
from apkfarm.services.signer.ledger import TokenLedger
from apkfarm.v1 import common_pb2

log = get_logger(__name__)

MAX_CONTROL_MEMBER_BYTES = 1024 * 1024
MAX_INDEX_MEMBER_BYTES = 64 * 1024 * 1024
_ARCH_LINE = re.compile(rb"^A:(.*)$", re.MULTILINE)
INDEX_LIMITS = ReadLimits(signature_member=MAX_INDEX_MEMBER_BYTES * 8)

SIGN_REQUESTS = Counter(
    "apkfarm_sign_requests_total", "Signature requests by kind and result", ["kind", "result"]
)
SIGN_REFUSALS = Counter(
    "apkfarm_sign_refusals_total", "Refused signature requests by reason", ["reason"]
)
AUDIT_HEAD = Gauge(
    "apkfarm_signer_audit_head_sequence",
    "Sequence number of the newest audit record (must never move backwards)",
)
ACTIVE_KEYS = Gauge("apkfarm_signer_active_keys", "Keys that sign new packages and indexes")


class SignRefused(ApkfarmError):
    """A request the signer will not sign; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Signed:
    signatures: tuple[SignatureFile, ...]
    audit_sequence: int


class SignerCore:
    def __init__(
        self,
        keys: SigningKeys,
        verifier: TokenVerifier,
        audit: AuditLog,
        ledger: TokenLedger,
    ) -> None:
        self.keys = keys
        self.verifier = verifier
        self.audit = audit
        self.ledger = ledger
        # Ledger claims and audit appends must not interleave between requests.
        self._lock = threading.Lock()
        ACTIVE_KEYS.set(len(keys.active))
        AUDIT_HEAD.set(audit.head_sequence)

    def public_keys(self) -> list[PublishedKey]:
        return list(self.keys.published)

    # --- packages ---------------------------------------------------------

    def sign_package(
        self, control_member: bytes, token: common_pb2.JobToken, requester: str
    ) -> Signed:
        digest = hashlib.sha256(control_member).hexdigest()
        with self._lock:
            try:
                grant, subject = self._check_package(control_member, token, requester, digest)
            except SignRefused as refusal:
                self._refuse("package", requester, digest, refusal, job_id=_job_of(token))
                raise
            signature = self.keys.primary.sign(control_member)
            record = self.audit.append(
                AuditEntry(
                    requester=requester,
                    action="sign-package",
                    result="signed",
                    subject=subject,
                    digest=digest,
                    job_id=grant.job_id,
                    keys=(self.keys.primary.key_name,),
                )
            )
        AUDIT_HEAD.set(record.sequence)
        SIGN_REQUESTS.labels(kind="package", result="signed").inc()
        log.info("signed package", subject=subject, job=grant.job_id, requester=requester)
        return Signed((signature,), record.sequence)

    def _check_package(
        self, control_member: bytes, token: common_pb2.JobToken, requester: str, digest: str
    ) -> tuple[common_pb2.JobGrant, str]:
        if len(control_member) > MAX_CONTROL_MEMBER_BYTES:
            raise SignRefused(
                "oversized", f"control member of {len(control_member)} bytes is too large"
            )
        try:
            grant = self.verifier.verify(token)
        except TokenRefused as refusal:
            raise SignRefused(refusal.reason, str(refusal)) from None
        job = grant.job_id
        arch = grant.template.arch
        if requester.startswith("builder-") and requester != f"builder-{arch}":
            raise SignRefused(
                "wrong_builder", f"{requester} may not sign for job {job}, which builds for {arch}"
            )
        try:
            info = read_control_member(control_member, source=f"job {job}: control member")
            # Names become ledger keys, file names and index entries: they must be apk's.
            info.validate()
        except ApkError as error:
            raise SignRefused("malformed_package", str(error)) from None
        subject = f"{info.pkgname}-{info.pkgver} {info.arch}"
        if info.pkgname not in grant.packages:
            raise SignRefused(
                "package_not_in_job",
                f"job {job} does not produce {info.pkgname} (allowed: {', '.join(grant.packages)})",
            )
        if info.pkgver != grant.template.version:
            raise SignRefused(
                "version_mismatch",
                f"{info.pkgname}: version {info.pkgver} is not job {job}'s {grant.template.version}",
            )
        if info.arch != arch:
            raise SignRefused(
                "arch_mismatch", f"{info.pkgname}: arch {info.arch} is not job {job}'s {arch}"
            )
        if info.origin not in (None, grant.template.pkgname):
            raise SignRefused(
                "origin_mismatch",
                f"{info.pkgname}: origin {info.origin} is not job {job}'s template "
                f"{grant.template.pkgname}",
            )
        previous = self.ledger.claim(grant.token_id, info.pkgname, digest)
        if previous == digest:
            raise SignRefused(
                "replayed_token", f"{info.pkgname}: job {job}'s token was already used for it"
            )
        if previous is not None:
            raise SignRefused(
                "different_content",
                f"{info.pkgname}: job {job} already had it signed with different content",
            )
        return grant, subject

    # --- indexes ----------------------------------------------------------

    def sign_index(self, content_member: bytes, category: str, arch: str, requester: str) -> Signed:
        digest = hashlib.sha256(content_member).hexdigest()
        subject = f"index {category}/{arch}"
        with self._lock:
            try:
                self._check_index(content_member, arch, subject)
            except SignRefused as refusal:
                self._refuse("index", requester, digest, refusal, subject=subject)
                raise
            signatures = tuple(signer.sign(content_member) for signer in self.keys.active)
            record = self.audit.append(
                AuditEntry(
                    requester=requester,
                    action="sign-index",
                    result="signed",
                    subject=subject,
                    digest=digest,
                    keys=tuple(signer.key_name for signer in self.keys.active),
                )
            )
        AUDIT_HEAD.set(record.sequence)
        SIGN_REQUESTS.labels(kind="index", result="signed").inc()
        log.info("signed index", subject=subject, requester=requester, keys=len(signatures))
        return Signed(signatures, record.sequence)

    def _check_index(self, content_member: bytes, arch: str, subject: str) -> None:
        if len(content_member) > MAX_INDEX_MEMBER_BYTES:
            raise SignRefused("oversized", f"{subject}: content member is too large")
        try:
            raw = read_archive(
                io.BytesIO(content_member),
                source=f"{subject}: content member",
                keyring=None,
                expect=ArchiveKind.INDEX,
                # Unsigned, the content member is the archive's first member.
                limits=INDEX_LIMITS,
            )
        except ApkError as error:
            raise SignRefused("malformed_index", str(error)) from None
        if not isinstance(raw, RawIndex):
            raise SignRefused("malformed_index", f"{subject}: not an index")
        if raw.signature_files:
            raise SignRefused("malformed_index", f"{subject}: already holds signatures")
        # Only the architecture lines matter here; one regular-expression pass
        # finds them all, cheap even for a distribution-sized index.
        for found in set(_ARCH_LINE.findall(raw.apkindex)):
            if found.decode("utf-8", "replace") != arch:
                raise SignRefused(
                    "arch_mismatch",
                    f"{subject}: names a package for {found.decode('utf-8', 'replace')}",
                )

    # --- refusals ---------------------------------------------------------

    def _refuse(
        self,
        kind: str,
        requester: str,
        digest: str,
        refusal: SignRefused,
        *,
        job_id: str = "",
        subject: str = "",
    ) -> None:
        SIGN_REQUESTS.labels(kind=kind, result="refused").inc()
        SIGN_REFUSALS.labels(reason=refusal.reason).inc()
        record = self.audit.append(
            AuditEntry(
                requester=requester,
                action=f"sign-{kind}",
                result="refused",
                subject=subject or f"{kind} request",
                digest=digest,
                job_id=job_id,
                reason=f"{refusal.reason}: {refusal}",
            )
        )
        AUDIT_HEAD.set(record.sequence)
        log.warning(
            "refused", kind=kind, requester=requester, reason=refusal.reason, detail=str(refusal)
        )


def _job_of(token: common_pb2.JobToken) -> str:
    """The job id a token claims, for the audit trail of a refusal (unverified)."""
    grant = common_pb2.JobGrant()
    try:
        grant.ParseFromString(token.grant)
    except Exception:  # a refusal is being recorded; an unparsable claim is just empty
        return ""
    return f"{grant.job_id} (claimed)" if grant.job_id else ""
