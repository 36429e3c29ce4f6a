pkgname = "zlib"
pkgver = "1.3.1"
pkgrel = 0
build_style = "configure"
hostmakedepends = ["pkgconf"]
makedepends = ["musl-devel"]
checkdepends = ["python"]
provides = ["so:libz.so.1=1.3.1"]
pkgdesc = "Compression library implementing the deflate method"
license = "Zlib"
url = "https://www.zlib.net"
source = f"{url}/zlib-{pkgver}.tar.gz"
sha256 = "9a93b2b7dfdac77ceba5a558a580e74667dd6fede4585b91eefb60f03b72df23"


@subpackage("zlib-devel")
def _(self):
    self.depends = [self.parent]
    return self.default_devel()
