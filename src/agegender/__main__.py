"""`python -m agegender`: the command line, also as torchrun starts it (`-m agegender train`)."""

import sys

from agegender.cli.main import main

sys.exit(main())
