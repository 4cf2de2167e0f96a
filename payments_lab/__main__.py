"""``python -m payments_lab``: the command line."""

import sys

from payments_lab.cli import main

sys.exit(main())
