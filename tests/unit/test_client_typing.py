"""The Python client's types, as mypy --strict sees them (tests/typing/*.py).

Each checked file marks what mypy must say about a line with a trailing comment:
``# N: Revealed type is "..."`` for a ``reveal_type`` and ``# E: <message>  [code]``
for an error. The test runs mypy once over the files and asserts that its errors and
revealed types are exactly those: a ``get`` overload that loosens to ``Any``, a
``get_json`` that stops following its default, or ``from_env(timout=3)`` accepted
all fail it, as does any unexpected error (an ``assert_type`` that no longer holds).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parents[2]
CHECKS = sorted((ROOT / "tests" / "typing").glob("check_*.py"))
_MARK = re.compile(r"#\s*(?P<kind>[NE]):\s*(?P<text>.+?)\s*$")
_OUTPUT = re.compile(r"^(?P<path>[^:]+\.py):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")
Finding = tuple[str, int, str, str]


def expected(paths: list[Path]) -> list[Finding]:
    """The ``# N:`` and ``# E:`` marks of the files."""
    found: list[Finding] = []
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            mark = _MARK.search(line)
            if mark:
                kind = "note" if mark["kind"] == "N" else "error"
                found.append((path.name, number, kind, mark["text"]))
    return found


def reported(output: str) -> list[Finding]:
    """mypy's errors and revealed types (other notes, such as "defined here", left out)."""
    found: list[Finding] = []
    for line in output.splitlines():
        match = _OUTPUT.match(line)
        if match is None:
            continue
        text = match["text"]
        if match["kind"] == "note" and not text.startswith("Revealed type is"):
            continue
        found.append((Path(match["path"]).name, int(match["line"]), match["kind"], text))
    return found


def test_the_checks_mark_what_they_expect() -> None:
    marks = expected(CHECKS)
    assert [p.name for p in CHECKS] == ["check_async.py", "check_sync.py"]
    for name in ("check_async.py", "check_sync.py"):
        texts = [text for file, _, _, text in marks if file == name]
        assert any('"timout"' in t for t in texts), f"{name}: from_env(timout=3) must be an error"
        assert any(t.startswith("Revealed type is") for t in texts), name


def test_mypy_strict_reveals_exactly_the_marked_types_and_errors(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\n"
        "strict = True\n"
        "python_version = 3.11\n"
        f"mypy_path = {ROOT / 'clients' / 'python' / 'src'}\n"
        "[mypy-sessionmemory.v1.*]\n"
        "ignore_errors = True\n"
        "[mypy-google.rpc,google.rpc.*]\n"
        "ignore_missing_imports = True\n"
    )
    cache = pytestconfig.cache.mkdir("mypy-typing") if pytestconfig.cache else tmp_path
    # mypy raises the interpreter's recursion limit for good (sys.setrecursionlimit);
    # tests that run after this one in the process measure recursion (test_schemas).
    limit = sys.getrecursionlimit()
    try:
        stdout, stderr, status = mypy_api.run(
            [
                "--config-file", str(config),
                "--cache-dir", str(cache),
                "--no-error-summary", "--show-error-codes", "--no-pretty", "--no-color-output",
                *[str(p.relative_to(ROOT)) for p in CHECKS],
            ]
        )  # fmt: skip
    finally:
        sys.setrecursionlimit(limit)
    assert not stderr, stderr
    assert status == 1, stdout  # the marked errors are there, so mypy fails
    assert sorted(reported(stdout)) == sorted(expected(CHECKS)), stdout
