pkgname = "no-ppc"
pkgver = "1.0"
pkgrel = 0
archs = ["*", "!ppc*"]
build_style = "makefile"
pkgdesc = "Program that does not run on any powerpc"
license = "MIT"
url = "https://example.org/no-ppc"
