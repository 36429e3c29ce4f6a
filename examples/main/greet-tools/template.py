pkgname = "greet-tools"
pkgver = "1.0.0"
pkgrel = 0
build_style = "meta"
depends = ["greet", "tally", "wordfreq"]
pkgdesc = "Collection of the greet example programs"
license = "custom:meta"
url = "https://apkfarm.example.org/examples"
