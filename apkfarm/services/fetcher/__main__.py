"""``python -m apkfarm.services.fetcher``: the same as ``apkfarm-fetcher``."""

import sys

from apkfarm.services.fetcher.main import main

sys.exit(main())
