pkgname = "greet-fortune"
pkgver = "1.0.0"
pkgrel = 0
build_style = "makefile"
hostmakedepends = ["pkgconf"]
makedepends = ["libgreet-devel"]
pkgdesc = "Greeting followed by a fortune"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/examples/greet-fortune"
source = f"$(EXAMPLES_SITE)/{pkgname}-{pkgver}.tar.gz"
sha256 = "1d5d03d7fd73ec9229b72f466789f7cc43a208c979b45d96ed8b6e7fb620b52b"

# "greet-fortune --about" names the target; only riscv64 builds say so
if self.profile().arch == "riscv64":
    make_build_args = ["ARCH_NOTE=riscv64"]


def post_install(self):
    self.install_license("COPYING")
