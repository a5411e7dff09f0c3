"""``python -m unirouter.cli``: the same as the ``unirouter`` command."""

import sys

from unirouter.cli.commands import main

sys.exit(main())
