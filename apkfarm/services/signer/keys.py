"""The signer's keys: loaded once at start, checked for safe permissions, never shown.

``APKFARM_KEYS_DIR`` holds the active keys as ``<name>.rsa`` files (mode 0600,
owned by the service user) and ``retired/<name>.rsa.pub`` for keys that sign
nothing any more but whose public half stays published. Packages are signed
with the primary key (the newest active one by the hex time in its name);
indexes with every active key.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apkfarm.apk.keys import PRIVATE_SUFFIX, PUBLIC_SUFFIX, load_public_key
from apkfarm.apk.signing import LocalKeySigner
from apkfarm.errors import ApkfarmError

RETIRED_DIR = "retired"


class KeyFileError(ApkfarmError):
    """A key file the signer refuses to use; the message names the file, never its content."""


@dataclass(frozen=True)
class PublishedKey:
    name: str
    pem: str
    key_id: str
    active: bool


def key_id(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _check_private_file(path: Path) -> None:
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read it; it must be 0600"
        )
    if info.st_uid != os.geteuid():
        raise KeyFileError(f"{path}: owned by uid {info.st_uid}, not by this service's user")


def _age(path: Path) -> tuple[int, str]:
    """Order keys by the hex unix time abuild puts in their names, then by name."""
    stem = path.name.removesuffix(PRIVATE_SUFFIX)
    _, _, hex_time = stem.rpartition("-")
    try:
        return int(hex_time, 16), path.name
    except ValueError:
        return 0, path.name


class SigningKeys:
    """The active signers (primary first) and every published public key."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise KeyFileError(f"{directory}: keys directory does not exist")
        private_files = sorted(directory.glob(f"*{PRIVATE_SUFFIX}"), key=_age, reverse=True)
        if not private_files:
            raise KeyFileError(f"{directory}: no active key (<name>{PRIVATE_SUFFIX})")
        for path in private_files:
            _check_private_file(path)
        # Each private key is read exactly once, here.
        self.active: list[LocalKeySigner] = [LocalKeySigner(path) for path in private_files]
        published = [
            PublishedKey(
                signer.key_name,
                _pem(signer.public_key),
                key_id(signer.public_key),
                active=True,
            )
            for signer in self.active
        ]
        retired_dir = directory / RETIRED_DIR
        active_names = {signer.key_name for signer in self.active}
        for path in sorted(retired_dir.glob(f"*{PUBLIC_SUFFIX}")) if retired_dir.is_dir() else []:
            if path.name in active_names:
                raise KeyFileError(f"{path}: a retired key that is also active")
            public = load_public_key(path)
            published.append(PublishedKey(path.name, _pem(public), key_id(public), active=False))
        self.published = published

    @property
    def primary(self) -> LocalKeySigner:
        return self.active[0]

    def __repr__(self) -> str:
        return f"SigningKeys(active={[s.key_name for s in self.active]})"


def _pem(public_key: rsa.RSAPublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
