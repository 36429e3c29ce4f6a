import sys

from apkfarm.services.scheduler.main import main

sys.exit(main())
