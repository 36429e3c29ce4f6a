"""What the fetcher is asked for, how it is checked, and how a fetch fails.

Everything in a fetch request is input from elsewhere (a template, a bus
message, an RPC), so it is validated before anything is fetched or stored:
the SHA-256 must be 64 lowercase hex digits, the file name one safe path
segment, the URL (after site macros) http(s) — or file:// where allowed —
without credentials. A failure says which file, from where, and what is wrong.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from apkfarm.errors import ApkfarmError
from apkfarm.services.fetcher.sites import SiteError, expand_url

MAX_URL_LENGTH = 4096
NETWORK_SCHEMES = ("http", "https")

_SHA256 = re.compile(r"[0-9a-f]{64}")
# One path segment a build can use as a file name: no '/', no leading '.' or '-'.
_FILENAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+~,=@-]{0,254}")


class FetchFailure(enum.StrEnum):
    """Why a fetch failed; the metric label and how callers decide to retry."""

    INVALID = "invalid"
    MISMATCH = "mismatch"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    HTTP = "http_error"
    REDIRECT = "redirect"
    DESTINATION = "destination"
    TIMEOUT = "timeout"
    NETWORK = "network"
    STORE = "store"


class FetchError(ApkfarmError):
    """A fetch that did not store its source; ``transient`` failures may succeed later."""

    def __init__(self, message: str, *, kind: FetchFailure, transient: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.transient = transient


@dataclass(frozen=True)
class SourceSpec:
    """A source as a template declares it (the URL may hold site macros)."""

    url: str
    sha256: str
    filename: str

    @property
    def label(self) -> str:
        """How messages name it: ``greet-1.0.tar.gz from https://...``."""
        return f"{_printable(self.filename)} from {_printable(redact_url(self.url))}"


@dataclass(frozen=True)
class ResolvedSource:
    """A validated source with its URL expanded."""

    spec: SourceSpec
    url: str
    scheme: str

    @property
    def sha256(self) -> str:
        return self.spec.sha256

    @property
    def filename(self) -> str:
        return self.spec.filename

    @property
    def label(self) -> str:
        return f"{self.filename} from {self.url}"


def redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def _printable(text: str, limit: int = 300) -> str:
    """Input echoed into a message: control characters escaped, length bounded."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValueError(f"sha256 {_printable(str(value))!r} is not 64 lowercase hex digits")
    return value


def check_filename(value: str) -> str:
    if not isinstance(value, str) or not _FILENAME.fullmatch(value):
        raise ValueError(
            f"file name {_printable(str(value))!r} is not one safe path segment "
            "(letters, digits and ._+~,=@- ; not starting with '.' or '-')"
        )
    return value


def check_url(url: str, *, allow_file: bool) -> str:
    """Validate an expanded URL; returns its scheme."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("the URL holds white space or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"the URL does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not allow_file:
            raise ValueError(
                "file:// URLs are refused here: only the embedded single-process mode "
                "reads local files (APKFARM_ALLOW_FILE_URLS=true)"
            )
        if parts.netloc not in ("", "localhost"):
            raise ValueError("a file:// URL names a host other than localhost")
        if not unquote(parts.path).startswith("/"):
            raise ValueError("a file:// URL needs an absolute path")
        return scheme
    if scheme not in NETWORK_SCHEMES:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise ValueError(f"the URL has {shown}; sources are fetched over http:// or https://")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("URLs with credentials are refused (they would end up in logs and events)")
    if port == 0:
        raise ValueError("the URL names port 0")
    return scheme


def resolve(spec: SourceSpec, sites: Mapping[str, str], *, allow_file: bool) -> ResolvedSource:
    """Validate ``spec`` and expand its site macros, or raise ``FetchError`` (INVALID)."""
    try:
        check_filename(spec.filename)
        check_sha256(spec.sha256)
        url = expand_url(spec.url, sites)
        scheme = check_url(url, allow_file=allow_file)
    except (ValueError, SiteError) as exc:
        raise FetchError(f"{spec.label}: {exc}", kind=FetchFailure.INVALID) from None
    return ResolvedSource(spec, url, scheme)
