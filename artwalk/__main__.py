"""``python -m artwalk``: the same as the ``artwalk`` command."""

import sys

from artwalk.driver import main

sys.exit(main())
