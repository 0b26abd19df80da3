"""The Go module as a newcomer uses it, and the Go version the docs promise.

`test_a_scratch_module_runs_the_registration_flow` does what the README asks of someone
new: a module of their own (`go mod init`), the client required through a `replace` to
this repository's clients/go (the one step that differs from `go get` of a release),
examples/go/registration/main.go copied in, `go mod tidy` against the Go module proxy,
`go vet`, a build, and a run against the real server that must print the flow's
transcript.

`test_the_docs_name_the_go_directive` keeps the `go` directive of clients/go/go.mod (the
oldest Go that can build the module and its dependencies) and every Go version the docs
name for the client the same.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import ServerThread
from ..examples import (
    EXAMPLES,
    check_example,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "go"
GO_TIMEOUT = 540  # seconds for one go command: tidy and the first build from cold caches


def go_directive(go_mod: Path) -> str:
    """The `go` directive of a go.mod as major.minor ("1.26" for `go 1.26.0`)."""
    found = re.search(r"^go (\d+)\.(\d+)(?:\.\d+)?\s*$", go_mod.read_text(encoding="utf-8"), re.M)
    assert found, f"{go_mod} has no go directive"
    return f"{found[1]}.{found[2]}"


def module_path(go_mod: Path) -> str:
    """The module path a go.mod declares."""
    found = re.search(r"^module (\S+)\s*$", go_mod.read_text(encoding="utf-8"), re.M)
    assert found, f"{go_mod} has no module line"
    return found[1]


def test_the_docs_name_the_go_directive() -> None:
    want = go_directive(CLIENT / "go.mod")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"The Go client needs Go (\d+\.\d+)\+", readme)
    assert named == [want], (
        f'README.md should say "The Go client needs Go {want}+" once (clients/go/go.mod'
        f" says go {want}); it names {named or 'no Go version for the client'}"
    )
    for doc in (CLIENT / "README.md", EXAMPLES / "go" / "README.md"):
        versions = set(re.findall(r"\bGo (\d+\.\d+)\+", doc.read_text(encoding="utf-8")))
        assert versions == {want}, f"{doc.relative_to(ROOT)} names Go {versions}, want {want}+"
    assert go_directive(EXAMPLES / "go" / "go.mod") == want


def go(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """Run a go command; its stdout, or a failure that shows what go printed."""
    done = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=GO_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"go {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.timeout(4 * GO_TIMEOUT)
def test_a_scratch_module_runs_the_registration_flow(tmp_path: Path, server: ServerThread) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # Outside any workspace; the module proxy may be asked for what go.sum lacks.
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=mod"}
    client_module = module_path(CLIENT / "go.mod")

    go("mod", "init", "scratch", cwd=scratch, env=env)
    go("mod", "edit", f"-replace={client_module}={CLIENT}", cwd=scratch, env=env)
    shutil.copy(EXAMPLES / "go" / "registration" / "main.go", scratch / "main.go")
    go("mod", "tidy", cwd=scratch, env=env)
    required = go("list", "-m", "-f", "{{.Path}} {{.Replace}}", client_module, cwd=scratch, env=env)
    assert required.split()[0] == client_module and str(CLIENT) in required, required
    go("vet", "./...", cwd=scratch, env=env)
    go("build", "-o", "registration", ".", cwd=scratch, env=env)

    check_example(
        "registration", [scratch / "registration"], server.address, server.create_key("newcomer-go")
    )
