import sys

from ggvision_classifier.app import main

sys.exit(main())
