"""examples/typescript: each flow's program, built against the packed client, prints its transcript.

The programs are compiled once per run in the newcomer's scratch project
(test_typescript_package.scratch_install: the packed client installed from its
tarball, strict `tsc`); every program then runs as its own `node` process with the
server's address, a tenant key of its own and a fresh session id in its environment,
reads them with `MemoryClient.fromEnv()` and plays its conversation against the real
server. What it prints must be examples/transcripts/<flow>.txt exactly
(tests/examples.py).
"""

from __future__ import annotations

import pytest

from ..conftest import ServerThread
from ..examples import (
    EXAMPLES,
    FLOWS,
    RUN_TIMEOUT,
    check_example,
    refused_line,
)
from .test_typescript_package import INSTALL_TIMEOUT, Scratch, scratch_install

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + RUN_TIMEOUT)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """The newcomer's project, installed and compiled once per run."""
    return scratch_install(tmp_path_factory)


@pytest.fixture(scope="module")
def example_key(server: ServerThread) -> str:
    """A tenant of its own: the examples see nothing the other tests wrote."""
    return server.create_key("examples-typescript")


def test_every_flow_has_a_typescript_program() -> None:
    programs = {p.stem for p in (EXAMPLES / "typescript").glob("*.ts")}
    assert programs == set(FLOWS)


@pytest.mark.parametrize("flow", FLOWS)
def test_example_prints_its_transcript(
    flow: str, scratch: Scratch, server: ServerThread, example_key: str
) -> None:
    check_example(flow, ["node", scratch.program(flow)], server.address, example_key)


def test_a_failing_call_exits_non_zero_with_one_readable_line(
    scratch: Scratch, server: ServerThread
) -> None:
    """A wrong key: the program says why in one line and exits 1."""
    line = refused_line(["node", scratch.program("registration")], server.address)
    assert line.startswith("registration: MemoryApiError: "), line
    assert line.endswith("[API_KEY_INVALID]"), line
