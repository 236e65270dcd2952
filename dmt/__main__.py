"""`python -m dmt` — see dmt/cli.py."""

import sys

from .cli import main

sys.exit(main())
