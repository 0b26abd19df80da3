"""Session Memory's benchmark harness: not part of the server distribution.

Run from the repository with ``make bench``, ``make bench-files``, ``make bench-watch``,
``make bench-limits``, ``make bench-obs`` and ``make bench-matrix`` (``BENCH_ARGS``
passes flags), or as ``PYTHONPATH=tools/bench python -m sessionmemory_bench <calls|files|
watch|limits|observability|matrix> --help``. Each starts the server it measures as its own process
(``python -m sessionmemory_server.cli serve``) from the installed server package.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME = str(Path(__file__).resolve().parent.parent)
"""The folder that holds this package (what PYTHONPATH needs to import it)."""


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with this package importable by a child process."""
    env = dict(os.environ if env is None else env)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([HOME, path] if path else [HOME])
    return env
