"""Key files and the set of trusted public keys.

Key file names are identities: ``<email>-<hex unix time>.rsa`` (private, PEM
PKCS#8) and ``<same>.rsa.pub`` (public, PEM SubjectPublicKeyInfo). A client
trusts a key by having the public file under that same name in
``/etc/apk/keys``; signatures name the key by that file name.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apkfarm.apk.errors import ApkKeyError

PRIVATE_SUFFIX = ".rsa"
PUBLIC_SUFFIX = ".rsa.pub"
ALLOWED_BITS = (2048, 4096)
_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._+-]*$")


@dataclass(frozen=True)
class KeyPair:
    """Where a generated key pair was written."""

    private_path: Path
    public_path: Path

    @property
    def key_name(self) -> str:
        """The public key's file name: what signatures and clients call the key."""
        return self.public_path.name


def public_key_name(private_key_path: Path) -> str:
    """``x.rsa`` -> ``x.rsa.pub``: the name a signature made with this key carries."""
    name = private_key_path.name
    if name.endswith(PUBLIC_SUFFIX):
        return name
    return name + ".pub" if name.endswith(PRIVATE_SUFFIX) else name + PUBLIC_SUFFIX


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ApkKeyError(f"{path}: cannot read private key ({error.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise ApkKeyError(f"{path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ApkKeyError(f"{path}: not an RSA key")
    return key


def load_public_key(path: Path) -> rsa.RSAPublicKey:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ApkKeyError(f"{path}: cannot read public key ({error.strerror})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise ApkKeyError(f"{path}: not a PEM public key ({error})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ApkKeyError(f"{path}: not an RSA public key")
    return key


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_key_pair(
    directory: Path, name: str, *, bits: int = 2048, now: int | None = None
) -> KeyPair:
    """Write ``<name>-<hex time>.rsa`` (mode 0600) and ``.rsa.pub``; never overwrite."""
    if not _KEY_NAME_RE.match(name):
        raise ApkKeyError(f"invalid key name {name!r}: use an e-mail address")
    if bits not in ALLOWED_BITS:
        raise ApkKeyError(f"key size {bits} is not one of {ALLOWED_BITS}")
    stamp = int(time.time()) if now is None else now
    base = f"{name}-{stamp:x}"
    private_path = directory / (base + PRIVATE_SUFFIX)
    public_path = directory / (base + PUBLIC_SUFFIX)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    directory.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: an existing key is never replaced; 0600 from the first byte on.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ApkKeyError(f"{private_path}: already exists; not overwriting a key") from None
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    try:
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ApkKeyError(f"{public_path}: already exists; not overwriting a key") from None
    with os.fdopen(fd, "wb") as out:
        out.write(public_key_pem(key.public_key()))
    return KeyPair(private_path, public_path)


class Keyring(Mapping[str, rsa.RSAPublicKey]):
    """Trusted public keys by key name (the public key file's name)."""

    def __init__(self, keys: Mapping[str, rsa.RSAPublicKey] | None = None) -> None:
        self._keys = dict(keys or {})

    @classmethod
    def from_directory(cls, directory: Path) -> Keyring:
        """Every ``*.rsa.pub`` in ``directory``; an empty or missing directory is an error."""
        if not directory.is_dir():
            raise ApkKeyError(f"{directory}: keys directory does not exist")
        keyring = cls.from_files(sorted(directory.glob("*" + PUBLIC_SUFFIX)))
        if not keyring:
            raise ApkKeyError(f"{directory}: no *{PUBLIC_SUFFIX} keys")
        return keyring

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> Keyring:
        return cls({path.name: load_public_key(path) for path in paths})

    @classmethod
    def from_private_keys(cls, paths: Iterable[Path]) -> Keyring:
        """Trust the public halves of private keys (to check what we sign ourselves)."""
        return cls({public_key_name(p): load_private_key(p).public_key() for p in paths})

    @classmethod
    def from_pem(cls, keys: Mapping[str, bytes]) -> Keyring:
        """Rebuild from ``to_pem()`` output (key objects cannot cross process boundaries)."""
        loaded: dict[str, rsa.RSAPublicKey] = {}
        for name, pem in keys.items():
            key = serialization.load_pem_public_key(pem)
            if not isinstance(key, rsa.RSAPublicKey):
                raise ApkKeyError(f"{name}: not an RSA public key")
            loaded[name] = key
        return cls(loaded)

    def to_pem(self) -> dict[str, bytes]:
        return {name: public_key_pem(key) for name, key in self._keys.items()}

    def __getitem__(self, name: str) -> rsa.RSAPublicKey:
        return self._keys[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyring({sorted(self._keys)})"
