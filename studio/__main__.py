"""``python -m studio [ROOT] [flags]``: the same as ``artwalk studio``."""

import sys

from studio.cli import main

sys.exit(main())
