"""What every command shares: exit codes, the one-line error, times, JSON and tables."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, NoReturn

import grpc
import typer
from rich.console import Console
from rich.table import Table


class ExitCode(IntEnum):
    """The exit status of ``session-memory``: one per class of failure."""

    OK = 0
    ERROR = 1
    """Anything else: an internal server error, an unexpected failure; `health`: not serving."""
    USAGE = 2
    """The command line is wrong (click's usage errors)."""
    NOT_FOUND = 3
    """The key, file, session, API key or signing key does not exist."""
    INVALID = 4
    """A value, type or limit was refused (INVALID_ARGUMENT, OUT_OF_RANGE)."""
    AUTH = 5
    """The credential is missing, unknown, expired or may not do this."""
    LIMIT = 6
    """A rate limit, quota or server cap (RESOURCE_EXHAUSTED)."""
    UNAVAILABLE = 7
    """The server, Redis or S3 did not answer in time (UNAVAILABLE, DEADLINE_EXCEEDED)."""
    CONFLICT = 8
    """A precondition failed or the stored state forbids it (ABORTED, FAILED_PRECONDITION)."""


EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 invalid value,"
    " 5 authentication or permission, 6 rate limit or quota, 7 unavailable or timeout,"
    " 8 conflict or precondition. Errors are one line on stderr:"
    " error: <message> (<REASON>)."
)

_BY_STATUS: dict[grpc.StatusCode, ExitCode] = {
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: ExitCode.INVALID,
    grpc.StatusCode.OUT_OF_RANGE: ExitCode.INVALID,
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.AUTH,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.AUTH,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ExitCode.LIMIT,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNAVAILABLE,
    grpc.StatusCode.ABORTED: ExitCode.CONFLICT,
    grpc.StatusCode.FAILED_PRECONDITION: ExitCode.CONFLICT,
    grpc.StatusCode.ALREADY_EXISTS: ExitCode.CONFLICT,
}


def exit_code_of(status: grpc.StatusCode) -> ExitCode:
    """The exit code of a gRPC status code (1 for those without a class of their own)."""
    return _BY_STATUS.get(status, ExitCode.ERROR)


def print_error(message: str, reason: str) -> None:
    """Print ``error: <message> (<REASON>)`` on stderr, as one line."""
    # One line: a message from a server or a library may hold newlines of its own.
    text = " ".join(message.split())
    print(f"error: {text} ({reason})", file=sys.stderr, flush=True)


def fail(message: str, reason: str, code: ExitCode) -> NoReturn:
    """Print ``error: <message> (<REASON>)`` on stderr and exit with ``code``."""
    print_error(message, reason)
    raise typer.Exit(int(code))


@contextlib.contextmanager
def errors_as_lines() -> Iterator[None]:
    """Turn the failures a command expects into one line on stderr and an exit code.

    The client's `MemoryApiError` by its status code (the reason is its ErrorInfo
    reason, else the status name), the server's `DomainError` likewise, a value
    the client refuses to send as INVALID_ARGUMENT, Redis and the file system as
    UNAVAILABLE and NOT_FOUND.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415
    from redis.exceptions import RedisClusterException, RedisError  # noqa: PLC0415
    from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: PLC0415

    from sessionmemory import MemoryApiError, MemoryTypeError  # noqa: PLC0415

    from ..errors import DomainError  # noqa: PLC0415

    try:
        yield
    except MemoryApiError as exc:
        fail(exc.message or str(exc), exc.code or exc.status.name, exit_code_of(exc.status))
    except DomainError as exc:
        fail(exc.message, exc.reason, exit_code_of(exc.code))
    except MemoryTypeError as exc:
        fail(str(exc), "TYPE_MISMATCH", ExitCode.INVALID)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        fail(f"Redis did not answer: {exc}", "UNAVAILABLE", ExitCode.UNAVAILABLE)
    except RedisClusterException as exc:  # not a RedisError: e.g. no cluster at that URL
        fail(f"Redis Cluster: {exc}", "UNAVAILABLE", ExitCode.UNAVAILABLE)
    except RedisError as exc:
        fail(f"Redis refused the command: {exc}", "REDIS_ERROR", ExitCode.ERROR)
    except BrokenPipeError:
        # The reader went away (`| head`): no message, as typer does for a print.
        quiet_stdout()
        raise typer.Exit(int(ExitCode.ERROR)) from None
    except FileNotFoundError as exc:
        fail(f"{exc.strerror}: {exc.filename}", "NOT_FOUND", ExitCode.NOT_FOUND)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}", "OS_ERROR", ExitCode.ERROR)
    except ValueError as exc:  # what the client refuses before sending (e.g. a timeout)
        fail(str(exc), "INVALID_ARGUMENT", ExitCode.INVALID)


def quiet_stdout() -> None:
    """Point stdout at /dev/null: its reader is gone, and the flush at exit must not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def parse_timeout(text: str) -> float:
    """Seconds of a deadline: a finite number above 0.

    Raises:
        typer.BadParameter: not a number, or not above 0.
    """
    try:
        seconds = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number of seconds") from None
    if not 0 < seconds < math.inf:
        raise typer.BadParameter(f"{text!r}: a timeout is a number of seconds above 0")
    return seconds


def iso(when: datetime | float | None, *, precise: bool = False) -> str | None:
    """ISO-8601 UTC (``2025-06-01T12:00:00Z``) of a datetime or epoch seconds; None stays."""
    if when is None:
        return None
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, tz=UTC)
    text = when.astimezone(UTC).isoformat(timespec="milliseconds" if precise else "seconds")
    return text.replace("+00:00", "Z")


def print_json(document: Any) -> None:
    """One JSON document on stdout (keys in the order given).

    Non-ASCII text is kept as it is on a UTF-8 output and written as JSON's own
    escapes on any other, so that the document stays valid JSON.
    """
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("_", "-")
    ascii_only = not encoding.startswith("utf")
    print(json.dumps(document, ensure_ascii=ascii_only, default=_json_default))


def tolerate_unencodable_output() -> None:
    """Escape what stdout cannot encode (a key in a C or latin-1 locale) instead of failing.

    Python's stdout is strict: one emoji in a value under ``PYTHONIOENCODING=ascii``
    would end the command with a traceback after the call succeeded.
    """
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, io.UnsupportedOperation):  # closed or detached
            reconfigure(errors="backslashreplace")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value, precise=True)
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def number_text(value: float) -> str:
    """A number as people write it: whole numbers without a fraction or an exponent."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table(*columns: str) -> Table:
    """A borderless table with these column headers."""
    grid = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for name in columns:
        grid.add_column(name, overflow="fold")
    return grid


def print_table(*tables: Table) -> None:
    """Print tables on stdout, a blank line between them.

    On a terminal rich fits them to its width. Anywhere else (a pipe, a file) no
    cell is wrapped or cut and no line carries trailing spaces, so that ``awk``,
    ``cut`` and ``grep`` see one row per line.
    """
    console = Console(highlight=False)
    if console.is_terminal:
        for i, grid in enumerate(tables):
            if i:
                console.print()
            console.print(grid)
        return
    wide = Console(file=io.StringIO(), width=100_000, highlight=False, color_system=None)
    lines: list[str] = []
    for i, grid in enumerate(tables):
        with wide.capture() as captured:
            wide.print(grid)
        lines += ([""] if i else []) + [line.rstrip() for line in captured.get().splitlines()]
    print("\n".join(lines))
