"""``python -m apkfarm.services.indexer``: the same as ``apkfarm-indexer``."""

import sys

from apkfarm.services.indexer.main import main

sys.exit(main())
