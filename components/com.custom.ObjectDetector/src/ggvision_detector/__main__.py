import sys

from ggvision_detector.app import main

sys.exit(main())
