"""The Python distributions declare the grpcio and protobuf the generated stubs need.

The generated `sessionmemory.v1` modules check their runtime when imported: a
`*_pb2_grpc` module raises RuntimeError under a grpcio older than its
GRPC_GENERATED_VERSION, a `*_pb2` module raises VersionError under a protobuf older
than the gencode it was made with. A floor below those lets pip install the client
into an environment where `import sessionmemory` then fails; these tests fail instead
when `make gen` moves the generated code past the declared floors.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "clients" / "python" / "src" / "sessionmemory" / "v1"
PROJECTS = [ROOT / "clients" / "python" / "pyproject.toml", ROOT / "pyproject.toml"]


def generated_needs() -> dict[str, Version]:
    """The newest grpcio and protobuf that any generated module asks for at import."""
    needs = {"grpcio": Version("0"), "protobuf": Version("0")}
    for module in STUBS.glob("*_pb2_grpc.py"):
        match = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", module.read_text(), re.M)
        assert match, f"{module.name}: no GRPC_GENERATED_VERSION"
        needs["grpcio"] = max(needs["grpcio"], Version(match[1]))
    for module in STUBS.glob("*_pb2.py"):
        match = re.search(
            r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
            r"\s*(\d+),\s*(\d+),\s*(\d+),",
            module.read_text(),
        )
        assert match, f"{module.name}: no ValidateProtobufRuntimeVersion"
        needs["protobuf"] = max(needs["protobuf"], Version(".".join(match.groups())))
    return needs


def floor(project: Path, name: str) -> Version:
    """The `>=` floor of dependency `name` in `project`."""
    for text in tomllib.loads(project.read_text())["project"]["dependencies"]:
        requirement = Requirement(text)
        if requirement.name == name:
            floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
            assert floors, f"{project.name}: {text} has no >= floor"
            return max(floors)
    raise AssertionError(f"{project}: no {name} dependency")


def test_the_generated_code_names_its_runtime_versions() -> None:
    needs = generated_needs()
    assert needs["grpcio"] > Version("1") and needs["protobuf"] > Version("3")


@pytest.mark.parametrize("project", PROJECTS, ids=["client", "server"])
@pytest.mark.parametrize("name", ["grpcio", "protobuf"])
def test_a_declared_floor_is_never_below_what_the_stubs_check(project: Path, name: str) -> None:
    need = generated_needs()[name]
    assert floor(project, name) >= need, (
        f"{project.relative_to(ROOT)} lets pip install {name} < {need}, under which"
        f" `import sessionmemory` fails: raise its floor to {name}>={need}"
    )
