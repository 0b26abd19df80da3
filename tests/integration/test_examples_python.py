"""examples/python: each flow's program, run as a bot developer runs it, prints its transcript.

Every program is started as its own process with the suite's Python (which has the
client installed), reads the server's address and a tenant key with
`MemoryClient.from_env()` and plays its conversation against the real server; what it
prints must be examples/transcripts/<flow>.txt exactly (tests/examples.py). A fresh
tenant per run and a fresh session per program keep runs apart.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import ServerThread
from ..examples import EXAMPLES, FLOWS, check_example, refused_line


@pytest.fixture(scope="module")
def example_key(server: ServerThread) -> str:
    """A tenant of its own: the examples see nothing the other tests wrote."""
    return server.create_key("examples-python")


def test_every_flow_has_a_python_program() -> None:
    programs = {p.stem for p in (EXAMPLES / "python").glob("*.py")}
    assert programs == set(FLOWS)


@pytest.mark.parametrize("flow", FLOWS)
def test_example_prints_its_transcript(flow: str, server: ServerThread, example_key: str) -> None:
    check_example(
        flow, [sys.executable, EXAMPLES / "python" / f"{flow}.py"], server.address, example_key
    )


def test_a_failing_call_exits_non_zero_with_one_readable_line(server: ServerThread) -> None:
    """A wrong key: the program says why in one line, no traceback, and exits 1."""
    line = refused_line([sys.executable, EXAMPLES / "python" / "registration.py"], server.address)
    assert line.startswith("registration: AuthenticationError: "), line


def test_the_examples_type_check_strictly() -> None:
    """What a bot developer's editor would say: mypy --strict, against the client's types."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11",
         str(EXAMPLES / "python")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
