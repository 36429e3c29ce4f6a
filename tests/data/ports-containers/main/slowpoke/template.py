# ruff: noqa: F821  (cbuild provides `subpackage` to templates)
pkgname = "slowpoke"
pkgver = "1.0.0"
pkgrel = 0
pkgdesc = "Test package whose build takes a while and says so as it goes"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/tests/slowpoke"
# No source: the build writes everything it installs.
options = ["!check"]

# Long enough for the container tests to see the build running and kill its
# builder (tests/containers); bounded so that it always ends by itself.
_ticks = 30


def build(self):
    self.do(
        "sh",
        "-c",
        f'for i in $(seq 1 {_ticks}); do echo "slowpoke: tick $i of {_ticks}"; sleep 0.5; done',
    )
    self.do("sh", "-c", 'printf "#!/bin/sh\\necho slowpoke\\n" > slowpoke')
    self.do("sh", "-c", 'echo "slowpoke: built after a slow build" > README')


def install(self):
    self.install_bin("slowpoke")
    self.install_file("README", "usr/share/doc/slowpoke")


@subpackage("slowpoke-doc")
def _(self):
    return ["usr/share/doc"]
