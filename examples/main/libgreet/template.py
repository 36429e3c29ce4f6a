pkgname = "libgreet"
pkgver = "1.0.0"
pkgrel = 0
build_style = "gnu_configure"
# the configure script is written by hand, there is nothing to regenerate
configure_gen = []
pkgdesc = "Library for formatting friendly greetings"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/examples/libgreet"
source = f"$(EXAMPLES_SITE)/{pkgname}-{pkgver}.tar.gz"
sha256 = "e8d871b6c34053df73c12df09169539b9475f6bec2f8a839fc92ff2e3dbd7939"


def post_install(self):
    self.install_license("COPYING")


@subpackage("libgreet-devel")
def _(self):
    return self.default_devel()
