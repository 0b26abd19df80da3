"""The ``session-memory`` command: run a server, administer it, read and write sessions.

Server: ``serve``, ``dev``, ``health``. Administration (Redis directly): ``keys``,
``tokens``, ``tenants``. Data (gRPC, with the Python client): ``get``, ``set``,
``set-json``, ``list``, ``delete``, ``clear``, ``touch``, ``limits``,
``put-file``, ``get-file``. Every failure is one line on stderr,
``error: <message> (<REASON>)``, and an exit code per class (`ExitCode`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import _data, _files, _server
from ._admin import keys_app, parse_duration, tenants_app, tokens_app
from ._output import EXIT_CODES_HELP, ExitCode, print_error, tolerate_unencodable_output

__all__ = ["ExitCode", "app", "main", "parse_duration", "version_text"]


class _Root(TyperGroup):
    """The ``session-memory`` group: a wrong command line is one error line too.

    click (typer's) prints a usage error as the usage, a hint and a framed
    message over several lines; here it is ``error: <message>; see '<command>
    --help' (USAGE)``, exit 2, like every other failure. Text that the output's
    encoding cannot hold is escaped instead of raising.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; in standalone mode exit with its code (`ExitCode`)."""
        tolerate_unencodable_output()
        try:
            result = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,  # errors come back here, not to click's printer
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.TyperException as exc:  # click's UsageError, BadParameter, ...
            code = getattr(exc, "exit_code", int(ExitCode.ERROR))
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one printed the help
                message = exc.format_message().rstrip(".")
                context = getattr(exc, "ctx", None)
                if context is not None:  # "...; see '...'" or "Did you mean 'set'? See '...'"
                    see = " See" if message.endswith("?") else "; see"
                    message += f"{see} '{context.command_path} --help'"
                print_error(message, "USAGE" if code == ExitCode.USAGE else "ERROR")
            return _finish(code, standalone_mode)
        except typer.Abort:
            print_error("aborted", "ABORTED")
            return _finish(ExitCode.ERROR, standalone_mode)
        # Not standalone, click returns the code of a typer.Exit, else the command's value.
        return _finish(result if isinstance(result, int) else 0, standalone_mode)


def _finish(code: int, standalone_mode: bool) -> int:
    if standalone_mode:
        sys.exit(code)
    return code


app = typer.Typer(
    cls=_Root,
    name="session-memory",
    help="Typed, expiring, per-conversation memory over gRPC.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    # A failure is one line (see ExitCode); a traceback would be a bug in this command.
    pretty_exceptions_enable=False,
)


def version_text() -> str:
    """``session-memory X (client Y, Python Z)`` of what is installed."""
    import sessionmemory  # noqa: PLC0415

    try:
        server = metadata.version("session-memory")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        server = "unknown"
    python = ".".join(map(str, sys.version_info[:3]))
    return f"session-memory {server} (client {sessionmemory.__version__}, Python {python})"


def _print_version(value: bool) -> None:
    if value:
        print(version_text())
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print the server's and the client's versions and exit",
        ),
    ] = False,
) -> None:
    """Typed, expiring, per-conversation memory over gRPC."""


_SERVER = "Server"
_ADMIN = "Administration (Redis)"
_DATA = "Data (gRPC)"

app.command("serve", rich_help_panel=_SERVER, epilog=EXIT_CODES_HELP)(_server.serve)
app.command("dev", rich_help_panel=_SERVER)(_server.dev)
app.command("health", rich_help_panel=_SERVER)(_server.health)
app.add_typer(keys_app, name="keys", rich_help_panel=_ADMIN)
app.add_typer(tokens_app, name="tokens", rich_help_panel=_ADMIN)
app.add_typer(tenants_app, name="tenants", rich_help_panel=_ADMIN)
for _name, _command in (
    ("get", _data.get),
    ("set", _data.set_value),
    ("set-json", _data.set_json),
    ("list", _data.list_keys),
    ("delete", _data.delete),
    ("clear", _data.clear),
    ("touch", _data.touch),
    ("limits", _data.limits),
    ("put-file", _files.put_file),
    ("get-file", _files.get_file),
):
    app.command(_name, rich_help_panel=_DATA, epilog=EXIT_CODES_HELP)(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``session-memory`` console script; returns the exit code."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="session-memory", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
