pkgname = "uses-user"
pkgver = "1.0"
pkgrel = 0
build_style = "makefile"
makedepends = ["userlib-devel"]
pkgdesc = "Main package that wrongly needs a user library"
license = "MIT"
url = "https://example.org/uses-user"
