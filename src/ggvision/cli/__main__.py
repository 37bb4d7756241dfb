"""``python -m ggvision.cli``: the ``ggvision`` command."""

from ggvision.cli import main

raise SystemExit(main())
