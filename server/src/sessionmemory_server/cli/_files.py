"""``put-file`` and ``get-file``: a session's files, with a progress bar on a terminal."""

from __future__ import annotations

import contextlib
import mimetypes
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ._data import Addr, ApiKey, AsJson, SessionId, connect, file_line, parse_ttl
from ._output import ExitCode, errors_as_lines, fail, iso, print_json

if TYPE_CHECKING:
    from sessionmemory import FileHandle

FileKey = Annotated[str, typer.Option("--key", "-k", help="the key of the file")]


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress callback drawing a bar (rate, ETA) on stderr; None off a terminal.

    A bar redrawn with carriage returns is noise in a log file or a pipe, so
    nothing is drawn unless stderr is a terminal.
    """
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def put_file(
    path: Annotated[
        Path, typer.Argument(help="the file to upload", exists=True, dir_okay=False, readable=True)
    ],
    session: SessionId,
    key: FileKey,
    mime: Annotated[
        str | None, typer.Option(help="MIME type (default: guessed from the file name)")
    ] = None,
    ttl: Annotated[
        int,
        typer.Option(parser=parse_ttl, metavar="DURATION", help="how long to keep it (at most 7d)"),
    ] = 86_400,
    as_json: AsJson = False,
    addr: Addr = None,
    api_key: ApiKey = None,
) -> None:
    """Upload a file into a session (at most 10 MiB)."""
    mime = mime or mimetypes.guess_type(path.name)[0]
    if mime is None:
        fail(
            f"cannot guess the MIME type of {path.name}; pass --mime",
            "MIME_UNKNOWN",
            ExitCode.USAGE,
        )
    with (
        errors_as_lines(),
        connect(addr, api_key, None) as client,
        progress_bar(f"uploading {path.name}") as progress,
    ):
        info = client.session(session).set_file(key, path, ttl=ttl, mime=mime, progress=progress)
    if as_json:
        print_json(
            {
                "key": info.key,
                "mime_type": info.mime_type,
                "size_bytes": info.size_bytes,
                "sha256": info.sha256,
                "version": info.version,
                "expires_at": iso(info.expires_at, precise=True),
            }
        )
    else:
        print("stored " + file_line(info))


def get_file(
    session: SessionId,
    key: FileKey,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="where to save it (default: the key); - writes it to stdout"
        ),
    ] = None,
    url: Annotated[
        bool, typer.Option("--url", help="print the presigned download URL instead")
    ] = False,
    addr: Addr = None,
    api_key: ApiKey = None,
) -> None:
    """Download a file of a session, or print its URL; a missing file exits 3."""
    with errors_as_lines(), connect(addr, api_key, None) as client:
        handle = client.session(session).get_file(key)
        if handle is None:
            fail(
                f"no file under {key!r} in session {session!r}",
                "FILE_NOT_FOUND",
                ExitCode.NOT_FOUND,
            )
        if url:
            print(handle.to_url())
            return
        target = output or Path(key)
        with progress_bar(f"downloading {key}") as progress:
            if str(target) == "-":
                done = _to_stdout(handle, progress)
            else:
                done = handle.save(target, progress=progress)
    if str(target) == "-":  # stdout holds the file's bytes and nothing else
        print(f"wrote {done} bytes to stdout, sha256 {handle.info.sha256}", file=sys.stderr)
    else:
        print(f"saved {target} ({done} bytes, sha256 {handle.info.sha256})")


def _to_stdout(handle: FileHandle, progress: Callable[[int, int | None], None] | None) -> int:
    """Stream the file's bytes to stdout as they are; returns how many were written."""
    out = sys.stdout.buffer
    written = 0
    for chunk in handle.iter_chunks():
        out.write(chunk)
        written += len(chunk)
        if progress is not None:
            progress(written, handle.info.size_bytes)
    out.flush()
    return written
