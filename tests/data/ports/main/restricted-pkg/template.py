pkgname = "restricted-pkg"
pkgver = "5.0"
pkgrel = 0
build_style = "makefile"
pkgdesc = "Codec pack with patent trouble"
license = "custom:proprietary"
url = "https://example.org/restricted-pkg"
restricted = "not redistributable"
