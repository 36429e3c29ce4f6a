pkgname = "cyc-b"
pkgver = "1.0"
pkgrel = 0
build_style = "makefile"
makedepends = ["cyc-a"]
pkgdesc = "Second half of a dependency cycle"
license = "MIT"
url = "https://example.org/cyc-b"
