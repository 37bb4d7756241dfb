import sys

from ggvision_liveview.app import main

sys.exit(main())
