"""examples/go: each flow's program, built as a Go developer builds it, prints its transcript.

The examples module (examples/go, which `replace`s the client with clients/go) is built
once per run with `go build -o <dir> ./...`; every program then runs as its own process
with the server's address, a tenant key of its own and a fresh session id in its
environment, reads them with `sessionmemory.NewFromEnv()` and plays its conversation
against the real server. What it prints must be examples/transcripts/<flow>.txt exactly
(tests/examples.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ..conftest import ServerThread
from ..examples import (
    EXAMPLES,
    FLOWS,
    RUN_TIMEOUT,
    check_example,
    refused_line,
)

GO_EXAMPLES = EXAMPLES / "go"
BUILD_TIMEOUT = 540  # seconds: the first build compiles grpc-go from cold caches

# The build happens in the first test's setup, which pytest-timeout counts.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + RUN_TIMEOUT)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory holding one binary per flow, built once."""
    out = tmp_path_factory.mktemp("go-examples")
    done = subprocess.run(
        ["go", "build", "-o", str(out), "./..."],
        cwd=GO_EXAMPLES,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"go build ./... in examples/go failed:\n{done.stderr}"
    return out


@pytest.fixture(scope="module")
def example_key(server: ServerThread) -> str:
    """A tenant of its own: the examples see nothing the other tests wrote."""
    return server.create_key("examples-go")


def test_every_flow_has_a_go_program() -> None:
    programs = {p.parent.name for p in GO_EXAMPLES.glob("*/main.go")}
    assert programs == set(FLOWS)


@pytest.mark.parametrize("flow", FLOWS)
def test_example_prints_its_transcript(
    flow: str, binaries: Path, server: ServerThread, example_key: str
) -> None:
    check_example(flow, [binaries / flow], server.address, example_key)


def test_a_failing_call_exits_non_zero_with_one_readable_line(
    binaries: Path, server: ServerThread
) -> None:
    """A wrong key: the program says why in one line and exits 1."""
    line = refused_line([binaries / "registration"], server.address)
    assert line.startswith("registration: sessionmemory: Unauthenticated: "), line
    assert line.endswith("[API_KEY_INVALID]"), line
