pkgname = "greet-motd"
pkgver = "1.0.0"
pkgrel = 0
build_style = "makefile"
depends = ["greet"]
pkgdesc = "Greeting and message of the day for login shells"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/examples/greet-motd"
source = f"$(EXAMPLES_SITE)/{pkgname}-{pkgver}.tar.gz"
sha256 = "37be6f3282a44f343c2dfecb1c05a9df78a7d3fb24b02bac6f7a910187fce10d"
# installs its editable settings as /etc/greet-motd.conf
options = ["etcfiles"]


def post_install(self):
    self.install_license("COPYING")
