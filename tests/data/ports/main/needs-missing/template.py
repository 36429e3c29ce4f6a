pkgname = "needs-missing"
pkgver = "1.0"
pkgrel = 0
build_style = "makefile"
makedepends = ["does-not-exist"]
pkgdesc = "Program whose library is not packaged"
license = "MIT"
url = "https://example.org/needs-missing"
