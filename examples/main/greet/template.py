pkgname = "greet"
pkgver = "1.0.0"
pkgrel = 0
build_style = "makefile"
hostmakedepends = ["pkgconf"]
makedepends = ["libgreet-devel"]
pkgdesc = "Command-line program printing friendly greetings"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/examples/greet"
source = f"$(EXAMPLES_SITE)/{pkgname}-{pkgver}.tar.gz"
sha256 = "4538c7fbc618564107b2f33802af1ad18c0b9dd4622a9b7a3ad12c9f26359213"


def post_install(self):
    self.install_license("COPYING")
