"""`python -m xpgrad.cli`: the `xpgrad` command."""

import sys

from . import main

sys.exit(main())
