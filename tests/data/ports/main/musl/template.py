pkgname = "musl"
pkgver = "1.2.5"
pkgrel = 1
build_style = "gnu_configure"
configure_args = ["--prefix=/usr"]
hostmakedepends = ["gmake"]
pkgdesc = "Musl C library"
license = "MIT"
url = "https://www.musl-libc.org"
source = f"https://www.musl-libc.org/releases/musl-{pkgver}.tar.gz"
sha256 = "a9a118bbe84d8764da0ea0d28b3ab3fae8477fc7e4085d90102b8596fc7c75e4"
# no tests shipped
options = ["bootstrap", "!check"]


def post_install(self):
    self.install_link("usr/bin/ldd", "../lib/libc.so")


@subpackage("musl-devel")
def _(self):
    return self.default_devel()


# the helper programs do not build on riscv64 yet
@subpackage("musl-progs", self.profile().arch != "riscv64")
def _(self):
    return self.default_progs()
