"""``python -m sessionmemory_bench <benchmark> [flags]``: run one benchmark."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from types import ModuleType

from . import calls, files, limits, matrix, observability, watch

_BENCHMARKS: dict[str, tuple[ModuleType, str]] = {
    "calls": (calls, "Get/Set/Increment against a bare grpc.aio + Redis floor, and the document"),
    "files": (files, "server peak RSS under concurrent 10 MiB uploads"),
    "watch": (watch, "Watch: idle watchers' cost and delivery latency under writes"),
    "limits": (limits, "the rate limiter: cost per call, accuracy over 2 processes, fairness"),
    "observability": (observability, "what metrics, tracing and the access log cost per Get"),
    "matrix": (matrix, "every call, files and workers against their floors: one Markdown table"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the benchmark it names."""
    parser = argparse.ArgumentParser(
        prog="python -m sessionmemory_bench",
        description="Session Memory's benchmarks (h2load drives calls, limits and observability).",
    )
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for name, (module, summary) in _BENCHMARKS.items():
        add: Callable[[argparse.ArgumentParser], None] = module.add_arguments
        add(
            sub.add_parser(
                name,
                help=summary,
                description=module.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = _BENCHMARKS[args.benchmark][0].main
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
