"""examples/python: each flow's program, run as a bot developer runs it, prints its transcript.

Every program is started as its own process with the suite's Python (which has the
client installed), reads the server's address and a tenant key with
`MemoryClient.from_env()` and plays its conversation against the real server; what it
prints must be examples/transcripts/<flow>.txt exactly (tests/examples.py). A fresh
tenant per run and a fresh session per program keep runs apart.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..conftest import ServerThread
from ..examples import EXAMPLES, FLOWS, RUN_TIMEOUT, check_transcript, example_env


@pytest.fixture(scope="module")
def example_key(server: ServerThread) -> str:
    """A tenant of its own: the examples see nothing the other tests wrote."""
    return server.create_key("examples-python")


def test_every_flow_has_a_python_program() -> None:
    programs = {p.stem for p in (EXAMPLES / "python").glob("*.py")}
    assert programs == set(FLOWS)


@pytest.mark.parametrize("flow", FLOWS)
def test_example_prints_its_transcript(flow: str, server: ServerThread, example_key: str) -> None:
    env = example_env(dict(os.environ), server.address, example_key)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python" / f"{flow}.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{flow} exited {done.returncode}:\n{done.stderr}"
    check_transcript(flow, done.stdout)


def test_a_failing_call_exits_non_zero_with_one_readable_line(server: ServerThread) -> None:
    """A wrong key: the program says why in one line, no traceback, and exits 1."""
    env = example_env(dict(os.environ), server.address, "smk_notakey_0000")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python" / "registration.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
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
