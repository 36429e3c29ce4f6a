pkgname = "broken"
pkgver = "1.0"
pkgrel = 0
pkgdesc = "Test package whose build always fails"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/tests/broken"
options = ["!check"]


def build(self):
    self.do("sh", "-c", "echo 'broken: about to fail'; exit 3")
