"""``python -m tmetoolkit``: the command line, as the ``tmetoolkit`` entry point runs it."""

import sys

from ._cli import main

sys.exit(main())
