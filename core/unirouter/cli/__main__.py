"""``python -m unirouter.cli``: the same as the ``unirouter`` command."""

import sys

from unirouter.cli.main import main

sys.exit(main())
