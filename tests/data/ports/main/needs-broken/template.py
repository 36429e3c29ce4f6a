pkgname = "needs-broken"
pkgver = "1.0"
pkgrel = 0
build_style = "makefile"
makedepends = ["broken-pkg"]
pkgdesc = "Program that links the broken library"
license = "MIT"
url = "https://example.org/needs-broken"
