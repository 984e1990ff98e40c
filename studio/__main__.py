"""``python -m studio [ROOT] [flags]``: the same as ``artwalk studio``."""

import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main())
