"""``python -m sessionmemory_server.cli``: the ``session-memory`` command."""

import sys

from . import main

sys.exit(main())
