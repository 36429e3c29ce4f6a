"""Which package each job token was already used for, kept in the blob store.

One object per (token id, package name), created only if absent, holding the
SHA-256 of the control member signed. A second request under the same token
for the same package is a replay; with another digest it is an attempt to get
different content signed. Kept in the store, so a restarted signer still knows.
"""

from __future__ import annotations

import re

from apkfarm.blobs import BlobStore, validate_key
from apkfarm.errors import ApkfarmError

LEDGER_PREFIX = "signer/tokens/"
_TOKEN_ID = re.compile(r"[0-9a-f]{32}")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+._-]{0,127}")


def ledger_key(token_id: str, package: str) -> str:
    if not _TOKEN_ID.fullmatch(token_id) or not _PACKAGE.fullmatch(package):
        raise ApkfarmError(f"invalid token id or package name for the ledger: {package!r}")
    return validate_key(f"{LEDGER_PREFIX}{token_id}/{package}")


class TokenLedger:
    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def claim(self, token_id: str, package: str, digest: str) -> str | None:
        """Record the use; None if it is the first, else the digest signed before."""
        key = ledger_key(token_id, package)
        if self.store.put_if_absent(key, digest.encode()):
            return None
        return self.store.get_bytes(key, max_size=128).decode("ascii", "replace")
