import sys

from ggvision_camera.app import main

sys.exit(main())
