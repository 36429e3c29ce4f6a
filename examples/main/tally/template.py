pkgname = "tally"
pkgver = "1.0.0"
pkgrel = 0
build_style = "cmake"
hostmakedepends = ["cmake", "ninja"]
pkgdesc = "Line, word and byte counter for text files"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/examples/tally"
source = f"$(EXAMPLES_SITE)/{pkgname}-{pkgver}.tar.gz"
sha256 = "5d2ed1acfa0a10703e2d0ff3ca455168d785c6a45ae7e01f7accd85196830eeb"


def post_install(self):
    self.install_license("COPYING")
