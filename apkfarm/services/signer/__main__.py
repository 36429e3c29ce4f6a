import sys

from apkfarm.services.signer.main import main

sys.exit(main())
