"""Source site macros: ``$(GNU_SITE)/hello/hello-2.12.tar.gz`` becomes a real URL.

cports templates name well-known download sites through macros that cbuild
expands before fetching. apkfarm expands them the same way, from a table an
operator can extend or override (``APKFARM_SOURCE_SITES="NAME=URL,..."``), so
a farm can point a macro at its own mirror. These are pure functions: the
scheduler can refuse a template with an unknown macro before any job is queued.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from apkfarm.errors import ApkfarmError

# cbuild's common sites; an operator's APKFARM_SOURCE_SITES entries win over these.
DEFAULT_SITES: Mapping[str, str] = MappingProxyType(
    {
        "CPAN_SITE": "https://www.cpan.org/modules/by-module",
        "DEBIAN_SITE": "https://ftp.debian.org/debian/pool",
        "FREEDESKTOP_SITE": "https://www.freedesktop.org/software",
        "GNOME_SITE": "https://download.gnome.org/sources",
        "GNU_SITE": "https://ftp.gnu.org/gnu",
        "KDE_SITE": "https://download.kde.org/stable",
        "KERNEL_SITE": "https://www.kernel.org/pub/linux",
        "MOZILLA_SITE": "https://ftp.mozilla.org/pub",
        "NONGNU_SITE": "https://download.savannah.nongnu.org/releases",
        "PYPI_SITE": "https://files.pythonhosted.org/packages/source",
        "SOURCEFORGE_SITE": "https://downloads.sourceforge.net/sourceforge",
        "UBUNTU_SITE": "http://archive.ubuntu.com/ubuntu/pool",
        "XFCE_SITE": "https://archive.xfce.org/src",
        "XORG_SITE": "https://www.x.org/releases/individual",
    }
)

SITE_SCHEMES = ("http", "https", "file")
_MACRO = re.compile(r"\$\(([^()]*)\)")
_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class SiteError(ApkfarmError):
    """A site table entry or a source URL's macro that cannot be used."""


def _check_site_url(name: str, url: str) -> str:
    if not url or any(ch.isspace() or ord(ch) < 0x20 for ch in url) or "$(" in url:
        raise SiteError(f"source site {name}: {url!r} is not a usable URL")
    parts = urlsplit(url)
    if parts.scheme not in SITE_SCHEMES:
        raise SiteError(
            f"source site {name}: {url!r} must start with one of "
            + ", ".join(f"{scheme}://" for scheme in SITE_SCHEMES)
        )
    if parts.scheme != "file" and not parts.hostname:
        raise SiteError(f"source site {name}: {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise SiteError(
            f"source site {name}: URLs with credentials are refused "
            "(they would end up in logs and events)"
        )
    # "$(GNU_SITE)/x" must not turn into "https://ftp.gnu.org/gnu//x".
    return url.rstrip("/")


def parse_sites(text: str) -> dict[str, str]:
    """Parse ``NAME=URL,NAME=URL`` (the APKFARM_SOURCE_SITES format); empty text is no sites."""
    sites: dict[str, str] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        if not sep:
            raise SiteError(f"source site entry {entry!r}: expected NAME=URL")
        if not _NAME.fullmatch(name):
            raise SiteError(
                f"source site entry {entry!r}: the name must be upper-case letters, "
                "digits and '_' (like GNU_SITE)"
            )
        if name in sites:
            raise SiteError(f"source site {name} is given twice")
        sites[name] = _check_site_url(name, url)
    return sites


def site_table(configured: str | Mapping[str, str] = "") -> dict[str, str]:
    """The defaults overlaid with ``configured`` (text as in APKFARM_SOURCE_SITES, or a mapping)."""
    if isinstance(configured, str):
        extra = parse_sites(configured)
    else:
        extra = {}
        for name, url in configured.items():
            if not _NAME.fullmatch(name):
                raise SiteError(f"source site name {name!r}: use upper-case letters, digits, '_'")
            extra[name] = _check_site_url(name, url)
    return {**DEFAULT_SITES, **extra}


def expand_url(url: str, sites: Mapping[str, str]) -> str:
    """Replace every ``$(NAME)`` in ``url`` with its site; an unknown macro is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        site = sites.get(name)
        if site is None:
            known = ", ".join(sorted(sites)) or "none"
            raise SiteError(
                f"source URL {url!r}: unknown site macro $({name}) "
                f"(known: {known}; add it with APKFARM_SOURCE_SITES)"
            )
        return site

    expanded = _MACRO.sub(replace, url)
    if "$(" in expanded:
        raise SiteError(f"source URL {url!r}: unterminated site macro")
    return expanded
