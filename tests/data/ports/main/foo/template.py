pkgname = "foo"
pkgver = "2.0.1"
pkgrel = 2
build_style = "meson"
configure_args = []
hostmakedepends = ["meson", "pkgconf"]
makedepends = ["zlib-devel"]
depends = ["!oldfoo", "cmd:awk!base-files", "so:libz.so.1!zlib"]
pkgdesc = "Tool that frobnicates foo files"
license = "BSD-2-Clause"
url = "https://example.org/foo"
source = f"{url}/foo-{pkgver}.tar.gz"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
hardening = ["vis", "!int"]
_extra = "extra"

# top-level code may branch on the target profile
if self.profile().wordsize == 64:
    configure_args += ["-Dlarge_files=true"]

match self.profile().arch:
    case "riscv64":
        makedepends += ["riscv-extra"]
    case "aarch64":
        configure_args += ["-Dneon=true"]

if self.profile().cross:
    configure_args += [f"--host={self.profile().triplet}"]


def pre_configure(self):
    pass


def post_install(self):
    self.install_license("COPYING")


@subpackage("foo-libs")
def _(self):
    return ["usr/lib/libfoo.so.*"]


@subpackage("foo-devel")
def _(self):
    self.depends = [self.parent, self.with_pkgver("foo-libs")]
    return self.default_devel(extra=["usr/share/foo/devel"])


@subpackage("foo", alternative="awk")
def _(self):
    self.subdesc = "awk provided by foo"
    self.provides = ["cmd:awk=2.0.1"]
    return ["usr/bin/awk"]
