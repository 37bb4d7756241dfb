import sys

from ggvision_requester.app import main

sys.exit(main())
