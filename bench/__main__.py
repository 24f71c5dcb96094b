"""`python -m bench`: the whole comparison in one command."""

import sys

from bench.run import main

sys.exit(main())
