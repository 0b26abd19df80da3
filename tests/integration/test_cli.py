"""The operator CLI against the real server: every data command for people and with
--json, one error line and an exit code per class of failure, the admin tables with
ISO times, --version, shell completion and the terminal-only progress bar.

Most commands run in-process (typer's CliRunner, stdout and stderr apart); a few run
the installed `session-memory` script as a real process.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import sessionmemory
from sessionmemory_server.cli import app
from sessionmemory_server.embedded import EmbeddedRedis
from sessionmemory_server.limits import FIELD_NAMES

from ..conftest import ServerThread

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")
SCRIPT = Path(sys.executable).with_name("session-memory")


def iso_time(text: str) -> datetime:
    assert ISO.fullmatch(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Cli:
    """`session-memory` in-process, pointed at the test server with a tenant's key."""

    def __init__(self, server: ServerThread, api_key: str, session: str) -> None:
        self.address, self.api_key, self.session = server.address, api_key, session
        self.runner = CliRunner()
        self.env = {
            "SESSION_MEMORY_ADDR": self.address,
            "SESSION_MEMORY_API_KEY": self.api_key,
            "SESSION_MEMORY_SESSION": self.session,
        }

    def __call__(self, *args: str, input: str | None = None, key: str | None = None) -> Result:
        env = {**self.env, "SESSION_MEMORY_API_KEY": key or self.api_key}
        return self.runner.invoke(app, list(args), env=env, input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result.stdout

    def json(self, *args: str, input: str | None = None) -> object:
        return json.loads(self.ok(*args, "--json", input=input))


@pytest.fixture
def cli(server: ServerThread, api_key: str, sid: str) -> Cli:
    return Cli(server, api_key, sid)


def one_error_line(result: Result, code: int, reason: str) -> str:
    """The failure printed nothing on stdout and exactly one `error: ... (REASON)` line."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith(f" ({reason})"), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def test_set_and_get_strings_numbers_and_booleans(cli: Cli) -> None:
    out = cli.ok("set", "step", "name")
    assert re.fullmatch(r"stored step \(string\), version \d+, expires \S+\n", out), out
    assert iso_time(out.split()[-1]) > datetime.now(UTC) + timedelta(hours=23)
    assert cli.ok("get", "step") == "name\n"
    # A shell argument is text: digits stay a string unless --type says otherwise.
    first = cli.json("set", "attempts", "3")
    assert cli.json("get", "attempts") == {
        "key": "attempts",
        "kind": "string",
        "value": "3",
        "version": first["version"],  # type: ignore[index]
        "expires_at": first["expires_at"],  # type: ignore[index]
    }
    written = cli.json("set", "attempts", "3", "--type", "number", "--ttl", "30m")
    assert written["kind"] == "number"  # type: ignore[index]
    assert written["version"] > first["version"]  # type: ignore[index]
    expires = iso_time(written["expires_at"])  # type: ignore[index]
    assert abs(expires - datetime.now(UTC) - timedelta(minutes=30)) < timedelta(seconds=30)
    got = cli.json("get", "attempts")
    assert got["kind"] == "number" and got["value"] == 3  # type: ignore[index]
    assert got["expires_at"] == written["expires_at"]  # type: ignore[index]
    assert cli.ok("get", "attempts") == "3\n"
    # auto: true/false and JSON numbers typed; leading zeros and the rest stay text.
    for text, kind, value in (
        ("true", "boolean", True),
        ("-2.5", "number", -2.5),
        ("1e3", "number", 1000),
        ("0042", "string", "0042"),
        ("+49301234", "string", "+49301234"),
        ("1_000", "string", "1_000"),
    ):
        cli.ok("set", "-t", "auto", "--", "v", text)  # "--": "-2.5" is no option
        got = cli.json("get", "v")
        assert (got["kind"], got["value"]) == (kind, value), text  # type: ignore[index]
    cli.ok("set", "flag", "FALSE", "--type", "bool")
    assert cli.ok("get", "flag") == "false\n"
    assert cli.ok("set", "v", "0042", "--type", "string", "--json").startswith("{")


def test_set_json_inline_from_a_file_and_from_stdin(cli: Cli, tmp_path: Path) -> None:
    cart = {"items": [{"name": "Käse", "qty": 2}], "total": 7.5}
    assert cli.json("set-json", "cart", json.dumps(cart), "--ttl", "1h")["kind"] == "json"  # type: ignore[index]
    out = cli.ok("get", "cart")
    assert json.loads(out) == cart and "\n  " in out  # indented for people
    assert cli.ok("get", "cart.items.0.name") == "Käse\n"  # a path: the value as it is
    assert cli.json("get", "cart.items.0.qty")["value"] == 2  # type: ignore[index]
    source = tmp_path / "order.json"
    source.write_text('{"status": "shipped"}')
    cli.ok("set-json", "order", f"@{source}", "--ttl", "3600")
    assert cli.ok("get", "order.status") == "shipped\n"
    cli.ok("set-json", "tags", "-", "--ttl", "1h", input='["a", "b"]')
    assert cli.json("get", "tags")["value"] == ["a", "b"]  # type: ignore[index]
    missing = cli("set-json", "x", f"@{tmp_path / 'nope.json'}", "--ttl", "1h")
    assert "nope.json" in one_error_line(missing, 3, "NOT_FOUND")


def test_list_touch_delete_and_clear(cli: Cli) -> None:
    cli.ok("set", "step", "name", "--ttl", "1h")
    cli.ok("set", "n", "5", "--type", "number", "--ttl", "1h")
    cli.ok("set-json", "cart", '{"items": []}', "--ttl", "1h")
    rows = cli.json("list")
    assert [(r["key"], r["kind"]) for r in rows] == [  # type: ignore[attr-defined]
        ("cart", "json"),
        ("n", "number"),
        ("step", "string"),
    ]
    for row in rows:  # type: ignore[attr-defined]
        assert set(row) == {"key", "kind", "size_bytes", "version", "expires_at"}
        iso_time(row["expires_at"])
    table = cli.ok("list").splitlines()
    assert table[0].split() == ["KEY", "KIND", "BYTES", "VERSION", "EXPIRES"]
    step = next(line.split() for line in table if line.startswith("step"))
    assert step[:2] == ["step", "string"] and step[2].isdigit() and step[3].isdigit()
    assert iso_time(step[4]) < datetime.now(UTC) + timedelta(hours=1, seconds=5)

    assert cli.ok("touch", "step", "n", "--ttl", "20h") == "touched 2 of 2\n"
    expires = iso_time(cli.json("get", "step")["expires_at"])  # type: ignore[index]
    assert expires > datetime.now(UTC) + timedelta(hours=19, minutes=59)
    partial = cli("touch", "step", "nothing", "--ttl", "1h")
    assert partial.exit_code == 3 and partial.stdout == "touched 1 of 2\n"
    assert partial.stderr.startswith("error: 1 of the keys do not exist")

    assert cli.ok("delete", "step", "nothing") == "deleted 1 of 2\n"  # a miss is no error
    assert cli.json("delete", "nothing") == {"deleted": 0, "requested": 1}
    assert cli.json("clear") == {"deleted": 2}
    assert cli.json("list") == []
    empty = cli("list")
    assert empty.exit_code == 0 and empty.stdout == "" and "has no keys" in empty.stderr
    assert cli.ok("clear") == f"cleared session {cli.session!r}: 0 keys deleted\n"


def test_a_miss_is_exit_3_with_nothing_on_stdout(cli: Cli) -> None:
    line = one_error_line(cli("get", "nothing"), 3, "NOT_FOUND")
    assert line == f"error: no key 'nothing' in session {cli.session!r} (NOT_FOUND)"
    one_error_line(cli("get", "nothing", "--json"), 3, "NOT_FOUND")
    one_error_line(cli("get-file", "--key", "nothing"), 3, "FILE_NOT_FOUND")


def test_credentials_refused_are_exit_5(cli: Cli) -> None:
    bad = cli("get", "k", key="smk_000000000000_notasecret")
    assert "API key" in one_error_line(bad, 5, "API_KEY_INVALID")
    flag = cli.runner.invoke(
        app,
        ["list", "--session", "s", "--addr", cli.address, "--api-key", "smk_0_x", "--json"],
        env={"SESSION_MEMORY_API_KEY": ""},
    )
    one_error_line(flag, 5, "API_KEY_INVALID")
    missing = cli.runner.invoke(
        app,
        ["get", "k", "--session", "s", "--addr", cli.address],
        env={"SESSION_MEMORY_API_KEY": ""},
    )
    assert "SESSION_MEMORY_API_KEY" in one_error_line(missing, 5, "API_KEY_MISSING")


def test_invalid_values_are_exit_4_and_bad_flags_exit_2(cli: Cli) -> None:
    too_long = one_error_line(cli("set", "k", "x" * 300), 4, "VALUE_TOO_LONG")
    assert "255" in too_long
    one_error_line(cli("set", "k", "maybe", "--type", "bool"), 4, "INVALID_ARGUMENT")
    one_error_line(cli("set", "k", "0x10", "--type", "number"), 4, "INVALID_ARGUMENT")
    one_error_line(cli("set-json", "k", "{not json", "--ttl", "1h"), 4, "INVALID_JSON")
    one_error_line(cli("set", "bad key!", "v"), 4, "INVALID_KEY")
    one_error_line(cli("set-json", "k", "{}", "--ttl", "30d"), 4, "TTL_OUT_OF_RANGE")
    usage = cli("set", "k", "v", "--ttl", "soon")
    assert usage.exit_code == 2 and "not a duration" in usage.stderr
    assert cli("set", "k", "v", "--ttl", "1.5").exit_code == 2  # whole seconds only
    assert cli("set-json", "k", "{}").exit_code == 2  # --ttl is required
    assert cli("frobnicate").exit_code == 2


def test_failed_preconditions_are_exit_8(cli: Cli) -> None:
    cli.ok("set", "once", "a", "--only-if-absent")
    one_error_line(cli("set", "once", "b", "--only-if-absent"), 8, "KEY_EXISTS")
    one_error_line(cli("set", "once", "b", "--if-version", "7"), 8, "VERSION_MISMATCH")
    assert cli.ok("get", "once") == "a\n"


def test_nothing_listening_is_exit_7(server: ServerThread, api_key: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = CliRunner().invoke(
        app,
        [
            "get",
            "k",
            "-s",
            "s",
            "--addr",
            f"127.0.0.1:{port}",
            "--api-key",
            api_key,
            "--timeout",
            "2",
        ],
    )
    one_error_line(result, 7, "UNAVAILABLE")
    assert time.monotonic() - started < 10


def test_a_tenant_over_its_quota_is_exit_6(
    server: ServerThread, redis_server: EmbeddedRedis
) -> None:
    tenant = f"cli-quota-{uuid.uuid4().hex[:8]}"
    runner = CliRunner()
    redis = ("--redis-url", redis_server.url)
    args = ["tenants", "set-limits", tenant, "--max-sessions", "1", "--json", *redis]
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["overridden"] == ["max_sessions"]
    assert json.loads(shown.stdout)["limits"]["max_sessions"] == 1
    table = runner.invoke(app, ["tenants", "show", tenant, *redis]).stdout
    assert re.search(r"^max_sessions\s+1\s+override$", table, re.M), table
    cli = Cli(server, server.create_key(tenant), "first")
    cli.ok("set", "k", "v")
    deadline = time.monotonic() + 10  # the servers pick overrides up within a second
    result = cli("set", "k", "v", "--session", f"s-{uuid.uuid4().hex}")
    while result.exit_code == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        result = cli("set", "k", "v", "--session", f"s-{uuid.uuid4().hex}")
    assert "quota" in one_error_line(result, 6, "QUOTA_EXCEEDED").lower()
    limits = cli.json("limits")
    assert limits["tenant_limits"]["max_sessions"] == 1  # type: ignore[index]
    assert limits["tenant_usage"]["sessions"] >= 1  # type: ignore[index]
    reset = runner.invoke(app, ["tenants", "reset", tenant, "--field", "max_sessions", *redis])
    assert reset.exit_code == 0 and re.search(r"^max_sessions\s+\d+\s+default$", reset.stdout, re.M)
    bad_field = runner.invoke(app, ["tenants", "reset", tenant, "--field", "nope", *redis])
    assert bad_field.exit_code == 2 and "max_sessions" in bad_field.stderr  # names the choices
    # Every tenant limit has its flag (they are made from limits.FIELD_NAMES).
    flags = runner.invoke(app, ["tenants", "set-limits", "--help"], env={"COLUMNS": "200"}).stdout
    for name in FIELD_NAMES:
        assert "--" + name.replace("_", "-") in flags, name


def test_limits_for_people_and_as_json(cli: Cli) -> None:
    shown = cli.json("limits")
    assert shown["max_string_length"] == 255  # type: ignore[index]
    assert "text/plain" in shown["allowed_mime_types"]  # type: ignore[index]
    assert set(shown["tenant_usage"]) == {"sessions", "stored_bytes", "uploads"}  # type: ignore[index]
    text = cli.ok("limits")
    assert re.search(r"^max_string_length\s+255$", text, re.M), text
    assert re.search(r"^TENANT LIMIT\s+VALUE\s+USED$", text, re.M), text
    assert re.search(r"^max_sessions\s+\S+\s+\d+$", text, re.M), text


def test_keys_list_is_a_table_with_iso_times(redis_server: EmbeddedRedis) -> None:
    runner = CliRunner()
    redis = ("--redis-url", redis_server.url)
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    created = runner.invoke(app, ["keys", "create", tenant, *redis])
    assert created.exit_code == 0 and "shown only once" in created.stderr
    key_id = created.stdout.strip().split("_")[1]
    expiring = runner.invoke(app, ["keys", "create", tenant, "--expires-in", "12h", *redis])
    expiring_id = expiring.stdout.strip().split("_")[1]
    listed = runner.invoke(app, ["keys", "list", *redis])
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["KEY", "ID", "TENANT", "CREATED", "EXPIRES", "STATUS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[key_id][1] == tenant and rows[key_id][3:] == ["never", "active"]
    assert abs(iso_time(rows[key_id][2]) - datetime.now(UTC)) < timedelta(minutes=1)
    later = iso_time(rows[expiring_id][3]) - datetime.now(UTC)
    assert timedelta(hours=11, minutes=58) < later <= timedelta(hours=12)
    as_json = {
        r["key_id"]: r
        for r in json.loads(runner.invoke(app, ["keys", "list", "--json", *redis]).stdout)
    }
    assert as_json[key_id]["created"] == rows[key_id][2] and as_json[key_id]["expires"] is None
    assert as_json[expiring_id]["expires"] == rows[expiring_id][3]
    unknown = runner.invoke(app, ["keys", "rotate", "000000000000", *redis])
    assert unknown.exit_code == 3 and unknown.stderr.strip().endswith("(NOT_FOUND)")
    revoked = runner.invoke(app, ["keys", "revoke", key_id, "000000000000", *redis])
    assert revoked.exit_code == 3 and revoked.stdout == "revoked 1 of 2\n"
    down = runner.invoke(app, ["keys", "list", "--redis-url", "redis://127.0.0.1:1/0"])
    one_error_line(down, 7, "UNAVAILABLE")


def test_version_names_the_server_and_the_client() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    server, client = metadata.version("session-memory"), sessionmemory.__version__
    assert result.stdout.startswith(f"session-memory {server} (client {client}, Python 3.")


def test_shell_completion() -> None:
    shown = CliRunner().invoke(app, ["--show-completion", "bash"])
    assert shown.exit_code == 0
    assert "_session_memory_completion" in shown.stdout and "complete " in shown.stdout
    # What bash runs on <TAB>: the script asks the command itself.
    env = {**os.environ, "_SESSION_MEMORY_COMPLETE": "complete_bash"}
    words = {"COMP_WORDS": "session-memory se", "COMP_CWORD": "1"}
    done = subprocess.run(
        [str(SCRIPT)], env={**env, **words}, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.stdout.split() == ["serve", "set", "set-json"], done.stderr
    fields = {"COMP_WORDS": "session-memory tenants reset t --field max_s", "COMP_CWORD": "5"}
    done = subprocess.run(
        [str(SCRIPT)],
        env={**env, **fields},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.split() == ["max_sessions", "max_stored_bytes"], done.stderr


def test_the_installed_script_reads_its_settings_from_the_environment(
    server: ServerThread, api_key: str, sid: str
) -> None:
    env = {
        **os.environ,
        "SESSION_MEMORY_ADDR": server.address,
        "SESSION_MEMORY_API_KEY": api_key,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    assert run("set", "-s", sid, "greeting", "hello world").returncode == 0
    got = run("get", "-s", sid, "greeting")
    assert (got.returncode, got.stdout, got.stderr) == (0, "hello world\n", "")
    miss = run("get", "-s", sid, "nothing")
    assert (miss.returncode, miss.stdout) == (3, "")
    assert miss.stderr == f"error: no key 'nothing' in session {sid!r} (NOT_FOUND)\n"
    env["SESSION_MEMORY_API_KEY"] = "smk_000000000000_nope"
    refused = run("list", "-s", sid)
    assert refused.returncode == 5 and refused.stderr.count("\n") == 1
    assert refused.stderr.endswith("(API_KEY_INVALID)\n")


def _upload(
    server: ServerThread, api_key: str, sid: str, source: Path, stderr: int
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SESSION_MEMORY_ADDR": server.address, "SESSION_MEMORY_API_KEY": api_key}
    env.pop("FORCE_TERMINAL", None)
    env.pop("TTY_COMPATIBLE", None)
    return subprocess.Popen(
        [str(SCRIPT), "put-file", "-s", sid, "--key", "notes", "--ttl", "10m", str(source)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def test_a_file_reads_as_the_same_json_from_the_cli_and_the_client(
    cli: Cli, server: ServerThread, api_key: str, sid: str
) -> None:
    with sessionmemory.MemoryClient(server.address, api_key=api_key) as client:
        memory = client.session(sid)
        memory.set_file("receipt", b"%PDF-1.4\n", ttl=600, mime="application/pdf")
        described = memory.get_json("receipt")
    got = cli.json("get", "receipt")
    assert got["kind"] == "file" and got["value"] == described  # type: ignore[index]
    assert set(described) == {  # type: ignore[arg-type]
        "key", "mime_type", "size_bytes", "sha256", "created_at", "expires_at", "version",
    }  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", described["expires_at"])  # type: ignore[index]


def test_the_progress_bar_is_drawn_only_on_a_terminal(
    server: ServerThread, api_key: str, sid: str, tmp_path: Path
) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(b"note\n" * (600 * 1024))  # 3 MiB of text
    piped = _upload(server, api_key, sid, source, subprocess.PIPE)
    out, err = piped.communicate(timeout=60)
    assert piped.returncode == 0, err
    assert err == b""  # no bar, no carriage returns: stderr is a pipe
    assert out.startswith(b"stored notes: text/plain, 3072000 bytes, sha256 ")
    # The same upload with stderr on a terminal draws a bar with rate and ETA.
    controller, terminal = pty.openpty()
    try:
        proc = _upload(server, api_key, sid, source, terminal)
        os.close(terminal)
        drawn = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                drawn += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(30) == 0
    finally:
        os.close(controller)
    text = drawn.decode(errors="replace")
    assert "uploading notes.txt" in text and "100%" in text, text
    assert "MiB" in text and "/s" in text  # bytes done and the rate


# --- what an operator or a script can get wrong: still one line, never a traceback ----


def test_a_wrong_command_line_is_one_error_line_exit_2(cli: Cli) -> None:
    # click's default is the usage, a hint and a framed message over five lines.
    line = one_error_line(cli("set", "k", "v", "--ttl", "abc"), 2, "USAGE")
    assert "not a duration" in line and "see 'session-memory set --help'" in line
    for ttl in ("nan", "inf", "-5", "1e400"):
        one_error_line(cli("set", "k", "v", "--ttl", ttl), 2, "USAGE")
    # Past the wire's int64 protobuf itself refused it: "Value out of range: 1e20".
    assert "longer than any TTL" in one_error_line(
        cli("set", "k", "v", "--ttl", "1e20"), 2, "USAGE"
    )
    # A deadline of 0 or less was sent and came back as DEADLINE_EXCEEDED (exit 7).
    for timeout in ("0", "-1", "nan"):
        one_error_line(cli("get", "k", "--timeout", timeout), 2, "USAGE")
    missing = cli.runner.invoke(app, ["get", "k"], env={"SESSION_MEMORY_SESSION": None})
    assert "--session" in one_error_line(missing, 2, "USAGE")
    assert "Did you mean 'set'?" in one_error_line(cli("sett"), 2, "USAGE")
    one_error_line(cli("keys", "revoke"), 2, "USAGE")
    # Asking for help is no error, and no command at all prints the help.
    assert cli("set", "--help").exit_code == 0
    bare = cli.runner.invoke(app, [])
    assert bare.exit_code == 2 and "Usage: session-memory" in bare.stdout and bare.stderr == ""


def test_json_input_is_strict_utf8_json(cli: Cli, tmp_path: Path) -> None:
    # Python's json takes NaN, Infinity and 1e400 (inf); the client then refused them
    # with "Out of range float values are not JSON compliant (INVALID_ARGUMENT)".
    for text in ("NaN", "[Infinity]", '{"a": 1e400}'):
        assert "value is not valid JSON" in one_error_line(
            cli("set-json", "k", text, "--ttl", "1h"), 4, "INVALID_JSON"
        )
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"name": "Käse"}'.encode("latin-1"))
    line = one_error_line(cli("set-json", "k", f"@{latin1}", "--ttl", "1h"), 4, "INVALID_JSON")
    assert "not UTF-8" in line and str(latin1) in line
    piped = cli.runner.invoke(
        app, ["set-json", "k", "-", "--ttl", "1h"], input=b"\xff", env=dict(cli.env)
    )
    assert "stdin is not UTF-8" in one_error_line(piped, 4, "INVALID_JSON")
    # Endless or oversized input: refused after a bounded read, nothing sent.
    assert "more than" in one_error_line(
        cli("set-json", "k", "@/dev/zero", "--ttl", "1h"), 4, "JSON_TOO_LARGE"
    )
    big = json.dumps({"text": "x" * 6000})  # over 5 KiB as compact JSON
    one_error_line(cli("set-json", "k", big, "--ttl", "1h"), 4, "JSON_TOO_LARGE")
    cli.ok("set-json", "k", "-", "--ttl", "1h", input='{"name": "Käse"}')
    assert cli.ok("get", "k.name") == "Käse\n"


def _script(
    env: dict[str, str], *args: str, shell_prefix: str = ""
) -> subprocess.CompletedProcess[str]:
    """The installed script in a shell (for redirections Python cannot express)."""
    command = " ".join([shell_prefix, str(SCRIPT), *(f"'{a}'" for a in args)])
    return subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_stdin_closed_and_unencodable_output_are_no_tracebacks(
    server: ServerThread, api_key: str, sid: str
) -> None:
    env = {**os.environ, "SESSION_MEMORY_ADDR": server.address, "SESSION_MEMORY_API_KEY": api_key}
    closed = _script(env, "set-json", "-s", sid, "k", "-", "--ttl", "1h", shell_prefix="exec 0<&-;")
    assert (closed.returncode, closed.stdout) == (2, ""), closed.stderr
    assert closed.stderr == "error: stdin is closed: give the JSON inline or as @FILE (USAGE)\n"
    assert _script(env, "set", "-s", sid, "cheese", "Käse 🧀").returncode == 0
    # stdout that cannot hold the text (a C locale forced to ASCII, latin-1): the value
    # escaped for people, JSON escapes in --json (still the same JSON value).
    ascii_env = {**env, "PYTHONIOENCODING": "ascii"}
    text = _script(ascii_env, "get", "-s", sid, "cheese")
    assert (text.returncode, text.stdout, text.stderr) == (0, "K\\xe4se \\U0001f9c0\n", "")
    latin = _script({**env, "PYTHONIOENCODING": "latin-1"}, "get", "-s", sid, "cheese", "--json")
    assert latin.returncode == 0, latin.stderr
    assert json.loads(latin.stdout)["value"] == "Käse 🧀" and latin.stdout.isascii()


def test_get_file_to_stdout_writes_the_bytes_alone(
    server: ServerThread, api_key: str, sid: str, tmp_path: Path
) -> None:
    env = {**os.environ, "SESSION_MEMORY_ADDR": server.address, "SESSION_MEMORY_API_KEY": api_key}
    source = tmp_path / "scan.pdf"
    source.write_bytes(b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024))
    assert _script(env, "put-file", "-s", sid, "--key", "scan", str(source)).returncode == 0
    got = subprocess.run(
        [str(SCRIPT), "get-file", "-s", sid, "--key", "scan", "-o", "-"],
        env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert got.stdout == source.read_bytes()  # nothing else on stdout: no summary, no bar
    assert got.stderr.decode().startswith(f"wrote {source.stat().st_size} bytes to stdout")
    assert not (Path.cwd() / "-").exists()
    # A reader that stops early (`| head -c 10`) ends the command quietly.
    cut = subprocess.run(
        ["bash", "-c", f"{SCRIPT} get-file -s {sid} --key scan -o - | head -c 10 >/dev/null;"
         " echo ${PIPESTATUS[0]}"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (cut.stdout, cut.stderr) == ("1\n", "")


def test_admin_and_server_refusals_are_one_error_line(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    runner = CliRunner()
    redis = ("--redis-url", redis_server.url)
    # redis-py raises RedisClusterException (no RedisError) when the node is no cluster.
    plain = runner.invoke(app, ["keys", "list", "--redis-cluster", *redis])
    assert "Cluster" in one_error_line(plain, 7, "UNAVAILABLE")
    one_error_line(runner.invoke(app, ["tenants", "set-limits", "t", *redis]), 2, "USAGE")
    one_error_line(runner.invoke(app, ["keys", "create", *redis]), 2, "USAGE")
    bad = runner.invoke(app, ["keys", "list", "--redis-timeout-seconds", "-1", *redis])
    assert "redis_timeout_seconds" in one_error_line(bad, 2, "INVALID_SETTING")
    missing = runner.invoke(
        app, ["serve", "--env-file", str(tmp_path / "none.env"), "--check-config"]
    )
    assert "no such file" in one_error_line(missing, 2, "USAGE")
    two = runner.invoke(
        app,
        ["serve", "--check-config"],
        env={"SESSION_MEMORY_WORKERS": "0", "SESSION_MEMORY_GRACE_SECONDS": "x"},
    )
    line = one_error_line(two, 2, "INVALID_SETTING")
    assert "setting workers:" in line and "setting grace_seconds:" in line


def test_the_bench_harness_lives_outside_the_server_package() -> None:
    root = Path(__file__).resolve().parents[2]
    server_src = root / "server" / "src" / "sessionmemory_server"
    assert not list(server_src.glob("bench*")), "benchmarks ship in the server wheel again"
    for source in server_src.rglob("*.py"):
        assert "sessionmemory_bench" not in source.read_text(), source
    env = {**os.environ, "PYTHONPATH": str(root / "tools" / "bench")}
    for name in ("calls", "files", "watch", "limits", "observability", "matrix"):
        done = subprocess.run(
            [sys.executable, "-m", "sessionmemory_bench", name, "--help"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0 and "usage: python -m sessionmemory_bench" in done.stdout, (
            done.stderr
        )


def test_health_failures_are_one_line(server: ServerThread, tmp_path: Path) -> None:
    runner = CliRunner()
    # NOT_FOUND from the health service carries no details: str() of the error was a
    # five-line dump of the RPC error.
    unknown = runner.invoke(app, ["health", "--addr", server.address, "--service", "nope"])
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr == (
        f"NOT_FOUND: service 'nope' at {server.address}: the server does not serve this service\n"
    )
    # pydantic-settings skips a missing env file without a word: the probe then asked
    # the default address and blamed the server.
    missing = tmp_path / "server.env"
    lost = runner.invoke(app, ["health", "--env-file", str(missing)])
    assert lost.exit_code == 1
    assert lost.stderr.count("\n") == 1 and f"--env-file {missing}: no such file" in lost.stderr
    assert runner.invoke(app, ["health", "--addr", server.address, "--timeout", "0"]).exit_code == 2
