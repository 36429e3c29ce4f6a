pkgname = "native-only"
pkgver = "1.4"
pkgrel = 0
build_style = "makefile"
pkgdesc = "Program whose build runs what it builds"
license = "MIT"
url = "https://example.org/native-only"
# generates its manual by running the built binary
options = ["!cross"]
