"""``python -m pipeline``: the same as the ``artwalk`` command."""

import sys

from pipeline.cli import main

sys.exit(main())
