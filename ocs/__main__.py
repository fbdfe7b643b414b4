"""`python -m ocs`: the `ocs` command."""

import sys

from ocs.cli.main import main

sys.exit(main())
