"""The data commands: one session's keys over gRPC, with the Python client.

``get``, ``set``, ``set-json``, ``list``, ``delete``, ``clear``, ``touch`` and
``limits`` (plus ``put-file``/``get-file`` in `_files`). Each takes ``--addr`` and
``--api-key`` (or SESSION_MEMORY_ADDR / SESSION_MEMORY_API_KEY; TLS from the
client's SESSION_MEMORY_TLS* variables) and prints text for people or, with
``--json``, one JSON document with stable field names.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from sessionmemory import FileInfo

from ..core import MAX_JSON_TEXT, json_value
from ._admin import parse_duration
from ._output import (
    ExitCode,
    errors_as_lines,
    fail,
    iso,
    number_text,
    parse_timeout,
    print_json,
    print_table,
    table,
)

if TYPE_CHECKING:
    from sessionmemory import Entry, MemoryClient, WriteResult

Addr = Annotated[
    str | None,
    typer.Option(
        envvar="SESSION_MEMORY_ADDR",
        metavar="HOST:PORT",
        help="the server (default localhost:50051)",
        show_default=False,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        envvar="SESSION_MEMORY_API_KEY",
        help="the tenant's API key or a session token",
        show_default=False,
    ),
]


Timeout = Annotated[
    float | None,
    typer.Option(
        parser=parse_timeout,
        metavar="SECONDS",
        help="deadline of the call, retries included (default 5)",
    ),
]
SessionId = Annotated[
    str,
    typer.Option(
        "--session", "-s", envvar="SESSION_MEMORY_SESSION", help="the session (conversation) id"
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document instead")]
IfVersion = Annotated[
    int | None, typer.Option(help="write only if the key is at this version (else exit 8)")
]
OnlyIfAbsent = Annotated[
    bool,
    typer.Option("--only-if-absent", help="write only if the key does not exist (else exit 8)"),
]


def parse_ttl(text: str) -> int:
    """Whole seconds of a duration (``1h``, ``30m``, ``90``).

    Raises:
        typer.BadParameter: not a duration, or not whole seconds.
    """
    seconds = parse_duration(text)
    if not seconds.is_integer():
        raise typer.BadParameter(f"{text!r} is not a whole number of seconds")
    if seconds > _MAX_TTL:  # past the wire's int64: the server could not even be asked
        raise typer.BadParameter(f"{text!r} is longer than any TTL the server accepts")
    return int(seconds)


_MAX_TTL: Final = 2**63 - 1


Ttl = Annotated[
    int | None,
    typer.Option(
        parser=parse_ttl,
        metavar="DURATION",
        help="time to live: 1h, 30m, 2d, 45s or seconds (default: the server's, one day)",
    ),
]
RequiredTtl = Annotated[
    int,
    typer.Option(
        parser=parse_ttl, metavar="DURATION", help="time to live: 1h, 30m, 2d, 45s or seconds"
    ),
]


def connect(addr: str | None, api_key: str | None, timeout: float | None) -> MemoryClient:
    """A client of the options given, the rest from the environment (as the client reads it).

    Raises:
        ValueError: the TLS variables or the timeout do not make a configuration.
    """
    from sessionmemory import MemoryClient  # noqa: PLC0415

    if timeout is None:
        return MemoryClient.from_env(address=addr, api_key=api_key)
    return MemoryClient.from_env(address=addr, api_key=api_key, timeout=timeout)


# --- values: what a shell argument becomes --------------------------------------------


class ValueType(StrEnum):
    """How `set` reads its VALUE argument."""

    string = "string"
    number = "number"
    bool = "bool"
    auto = "auto"


# JSON's number grammar: no leading zeros, no "+", no "_", no hex, no inf/nan.
_NUMBER: Final = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _number(text: str) -> int | float | None:
    if not _NUMBER.fullmatch(text):
        return None
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else None


def typed_value(text: str, kind: ValueType) -> str | int | float | bool:
    """The value `set` stores for ``text`` read as ``kind``.

    ``string`` (the default) stores the text as it is, digits included: a shell
    argument is text, and ids such as ``0042`` or ``+4930...`` must survive (readers
    with a number default still read ``"3"`` as 3). ``number`` takes a JSON number
    (``42``, ``-2.5``, ``1e6``), ``bool`` takes ``true``/``false``; ``auto`` stores
    ``true``/``false`` and JSON numbers typed, anything else as a string.

    Raises:
        ValueError: ``text`` is not a value of ``kind``.
    """
    if kind is ValueType.string:
        return text
    if kind is ValueType.bool or (kind is ValueType.auto and text in ("true", "false")):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not a boolean: use true or false")
        return text.lower() == "true"
    number = _number(text)
    if number is not None:
        return number
    if kind is ValueType.auto:
        return text
    raise ValueError(f"{text!r} is not a number: write it as JSON does (42, -2.5, 1e6)")


# The most JSON text read from a file or stdin: the server's text bound in UTF-8's widest.
_MAX_READ: Final = 4 * MAX_JSON_TEXT


def _read_json_text(source: str) -> str:
    """JSON text given inline, as ``@path`` (a file) or ``-`` (stdin), read as UTF-8.

    Raises:
        OSError: the file cannot be read.
        typer.Exit: stdin is closed, or the bytes are not UTF-8 (after the error line).
    """
    if source == "-":
        stdin = getattr(sys.stdin, "buffer", sys.stdin)
        if stdin is None:  # started with stdin closed (<&-)
            fail("stdin is closed: give the JSON inline or as @FILE", "USAGE", ExitCode.USAGE)
        data: bytes | str = stdin.read(_MAX_READ + 1)
        where = "stdin"
    elif source.startswith("@"):
        where = source[1:]
        with Path(where).open("rb") as file:
            data = file.read(_MAX_READ + 1)
    else:
        return source
    if len(data) > _MAX_READ:  # endless input (/dev/zero, a stream) is not read to its end
        fail(
            f"{where} holds more than {_MAX_READ} bytes, past any JSON value the server keeps",
            "JSON_TOO_LARGE",
            ExitCode.INVALID,
        )
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(
            f"{where} is not UTF-8 text (byte {exc.start}); JSON is UTF-8",
            "INVALID_JSON",
            ExitCode.INVALID,
        )


# --- output -------------------------------------------------------------------------


def file_line(info: FileInfo) -> str:
    """A file's info in one line, for people."""
    return (
        f"{info.key}: {info.mime_type}, {info.size_bytes} bytes, sha256 {info.sha256},"
        f" version {info.version}, expires {iso(info.expires_at)}"
    )


def _entry_json(entry: Entry) -> dict[str, Any]:
    value = entry.value
    if isinstance(value, FileInfo):
        value = value.to_json()
    return {
        "key": entry.key,
        "kind": entry.kind,
        "value": value,
        "version": entry.version,
        "expires_at": iso(entry.expires_at, precise=True),
    }


def _text(entry: Entry) -> str:
    """The value as a person (or a shell's ``$(...)``) wants it: strings as they are."""
    value = entry.value
    if entry.kind == "string":
        return str(value)
    if isinstance(value, FileInfo):
        return "file " + file_line(value)
    if entry.kind == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value)  # numbers, true/false


def _written(result: WriteResult, kind: str, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "key": result.key,
                "kind": kind,
                "version": result.version,
                "expires_at": iso(result.expires_at, precise=True),
            }
        )
    else:
        print(
            f"stored {result.key} ({kind}), version {result.version},"
            f" expires {iso(result.expires_at)}"
        )


# --- commands -------------------------------------------------------------------------


def get(
    key: Annotated[str, typer.Argument(help='a key, or a path into a JSON value ("order.status")')],
    session: SessionId,
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Print a value: strings as they are, numbers and booleans as JSON, JSON indented.

    A missing key prints nothing on stdout and exits 3.
    """
    with errors_as_lines(), connect(addr, api_key, timeout) as client:
        entry = client.session(session).get_entry(key)
    if entry is None:
        fail(f"no key {key!r} in session {session!r}", "NOT_FOUND", ExitCode.NOT_FOUND)
    if as_json:
        print_json(_entry_json(entry))
    else:
        print(_text(entry))


def set_value(
    key: Annotated[str, typer.Argument(help="the key")],
    value: Annotated[str, typer.Argument(help="the value, read as --type says")],
    session: SessionId,
    value_type: Annotated[
        ValueType,
        typer.Option(
            "--type",
            "-t",
            help="string stores the text as it is (digits too); number: a JSON number;"
            " bool: true or false; auto: true/false and JSON numbers typed, the rest strings",
        ),
    ] = ValueType.string,
    ttl: Ttl = None,
    if_version: IfVersion = None,
    only_if_absent: OnlyIfAbsent = False,
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Store a string, number or boolean (a string unless --type says otherwise)."""
    try:
        typed = typed_value(value, value_type)
    except ValueError as exc:
        fail(str(exc), "INVALID_ARGUMENT", ExitCode.INVALID)
    kind = {str: "string", bool: "boolean"}.get(type(typed), "number")
    with errors_as_lines(), connect(addr, api_key, timeout) as client:
        result = client.session(session).set(
            key, typed, ttl=ttl, if_version=if_version, only_if_absent=only_if_absent
        )
    _written(result, kind, as_json)


def set_json(
    key: Annotated[str, typer.Argument(help="the key")],
    value: Annotated[
        str, typer.Argument(help="JSON text, @FILE for a file's, or - for stdin's", metavar="JSON")
    ],
    session: SessionId,
    ttl: RequiredTtl,
    if_version: IfVersion = None,
    only_if_absent: OnlyIfAbsent = False,
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Store a JSON value (an object, array or any JSON) for --ttl (at most a day)."""
    with errors_as_lines():
        text = _read_json_text(value)
    with errors_as_lines():  # the server's own checks: INVALID_JSON, JSON_TOO_DEEP/LARGE
        parsed = json.loads(json_value(text, field="value"))
    with errors_as_lines(), connect(addr, api_key, timeout) as client:
        result = client.session(session).set_json(
            key, parsed, ttl=ttl, if_version=if_version, only_if_absent=only_if_absent
        )
    _written(result, "json", as_json)


def list_keys(
    session: SessionId,
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """List a session's live keys: kind, size, version and expiry (UTC)."""
    with errors_as_lines(), connect(addr, api_key, timeout) as client:
        infos = client.session(session).list()
    if as_json:
        print_json(
            [
                {
                    "key": i.key,
                    "kind": i.kind,
                    "size_bytes": i.size_bytes,
                    "version": i.version,
                    "expires_at": iso(i.expires_at, precise=True),
                }
                for i in infos
            ]
        )
        return
    if not infos:
        print(f"session {session!r} has no keys", file=sys.stderr)
        return
    grid = table("KEY", "KIND", "BYTES", "VERSION", "EXPIRES")
    for i in infos:
        grid.add_row(i.key, i.kind, str(i.size_bytes), str(i.version), iso(i.expires_at))
    print_table(grid)


Keys = Annotated[list[str], typer.Argument(help="one key or more")]


def delete(
    keys: Keys,
    session: SessionId,
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Delete keys; those that did not exist are counted, not an error (exit 0)."""
    with errors_as_lines(), connect(addr, api_key, timeout) as client:
        count = client.session(session).delete(keys)
    if as_json:
        print_json({"deleted": count, "requested": len(keys)})
    else:
        print(f"deleted {count} of {len(keys)}")


def clear(
    session: SessionId,
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Delete the whole session (every key, its files and its document)."""
    with errors_as_lines(), connect(addr, api_key, timeout) as client:
        count = client.session(session).clear()
    if as_json:
        print_json({"deleted": count})
    else:
        print(f"cleared session {session!r}: {count} keys deleted")


def touch(
    keys: Keys,
    session: SessionId,
    ttl: RequiredTtl,
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Give keys a new TTL without rewriting them; exit 3 when one of them did not exist."""
    with errors_as_lines(), connect(addr, api_key, timeout) as client:
        count = client.session(session).touch(keys, ttl=ttl)
    if as_json:
        print_json({"touched": count, "requested": len(keys)})
    else:
        print(f"touched {count} of {len(keys)}")
    if count < len(keys):
        fail(
            f"{len(keys) - count} of the keys do not exist in session {session!r}",
            "NOT_FOUND",
            ExitCode.NOT_FOUND,
        )


def limits(
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """The limits the server enforces, and your tenant's rate limits, quotas and usage."""
    with errors_as_lines(), connect(addr, api_key, timeout) as client:
        found = client.get_limits()
    shown = dataclasses.asdict(found)
    if as_json:
        print_json(shown)
        return
    tenant, usage = shown.pop("tenant_limits"), shown.pop("tenant_usage")
    server = table("SERVER LIMIT", "VALUE")
    for name, value in shown.items():
        text = ", ".join(value) if isinstance(value, list | tuple) else number_text(value)
        server.add_row(name, text)
    own = table("TENANT LIMIT", "VALUE", "USED")
    used = {
        "max_sessions": "sessions",
        "max_stored_bytes": "stored_bytes",
        "max_uploads": "uploads",
    }
    for name, value in tenant.items():
        text = "unlimited" if value == 0 and "burst" not in name else number_text(value)
        own.add_row(name, text, str(usage[used[name]]) if name in used else "")
    print_table(server, own)
