pkgname = "wordfreq"
pkgver = "1.0.0"
pkgrel = 0
build_style = "meson"
hostmakedepends = ["meson"]
pkgdesc = "Word frequency counter for text files"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/examples/wordfreq"
source = f"$(EXAMPLES_SITE)/{pkgname}-{pkgver}.tar.gz"
sha256 = "00dc12686f68497aa00533e5f30161e542613d4f831986250a0de362c40adc3a"


def post_install(self):
    self.install_license("COPYING")
