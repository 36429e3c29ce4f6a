pkgname = "broken-pkg"
pkgver = "0.9"
pkgrel = 0
build_style = "makefile"
pkgdesc = "Library that does not link at the moment"
license = "MIT"
url = "https://example.org/broken-pkg"
broken = "fails to link against the new toolchain"
