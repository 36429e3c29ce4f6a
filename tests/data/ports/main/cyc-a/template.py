pkgname = "cyc-a"
pkgver = "1.0"
pkgrel = 0
build_style = "makefile"
makedepends = ["cyc-b"]
pkgdesc = "First half of a dependency cycle"
license = "MIT"
url = "https://example.org/cyc-a"
