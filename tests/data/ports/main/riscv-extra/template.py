pkgname = "riscv-extra"
pkgver = "1.0"
pkgrel = 0
archs = ["riscv64"]
build_style = "meta"
pkgdesc = "Extra support files for riscv64"
license = "MIT"
url = "https://example.org/riscv-extra"
