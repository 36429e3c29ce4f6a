pkgname = "x86-only"
pkgver = "3.1"
pkgrel = 0
archs = ["x86_64"]
build_style = "makefile"
pkgdesc = "Firmware tool that only exists for x86_64"
license = "GPL-2.0-only"
url = "https://example.org/x86-only"
