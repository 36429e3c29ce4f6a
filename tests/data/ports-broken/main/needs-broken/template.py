pkgname = "needs-broken"
pkgver = "1.0"
pkgrel = 0
build_style = "meta"
depends = ["broken"]
pkgdesc = "Test package that cannot build without broken"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/tests/needs-broken"
