import sys

from apkfarm.services.builder.main import main

sys.exit(main())
