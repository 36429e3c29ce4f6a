pkgname = "base-files"
pkgver = "0.1.2"
pkgrel = 3
build_style = "meta"
pkgdesc = "Base system files and directories"
license = "custom:meta"
url = "https://example.org/base-files"
