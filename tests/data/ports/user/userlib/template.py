pkgname = "userlib"
pkgver = "0.4.0"
pkgrel = 1
build_style = "cmake"
hostmakedepends = ["cmake", "ninja"]
makedepends = ["zlib-devel"]
pkgdesc = "Small library from the user category"
license = "ISC"
url = "https://example.org/userlib"


@subpackage("userlib-devel")
def _(self):
    return self.default_devel()
