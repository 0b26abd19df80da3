"""`make docs`: the API references document what they should, and problems fail the build.

The module fixture runs tools/docs/build_docs.py, the script `make docs` runs, into a
temporary folder (all three generators, ~6 s), so the checks never read a stale
build/docs. The proto reference is compared with the compiler's own descriptors (`buf
build`), the Python one with `sessionmemory.__all__`, the TypeScript one with the names
clients/typescript/src/index.ts exports. Two more tests feed the checks something broken
and expect a failure: a proto without comments, and a class whose annotations pdoc
cannot resolve.

Needs what `make docs` installs (protoc-gen-doc in tools/docs/.bin, TypeDoc in
tools/docs/node_modules, the TypeScript client's node_modules); `make test` runs it first.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2

import sessionmemory

ROOT = Path(__file__).resolve().parents[2]
BUILD_DOCS = ROOT / "tools" / "docs" / "build_docs.py"
TS_INDEX = ROOT / "clients" / "typescript" / "src" / "index.ts"


def _load_build_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_docs", BUILD_DOCS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_docs"] = module
    spec.loader.exec_module(module)
    return module


build_docs = _load_build_docs()


def _buf() -> str:
    buf = shutil.which("buf")
    if buf is None:
        pytest.fail("buf is not on PATH: `make install` puts it in .venv/bin")
    return buf


@dataclass(frozen=True)
class Built:
    """One run of build_docs.py: where it wrote and what it said."""

    out: Path
    returncode: int
    stdout: str
    stderr: str

    def reference(self, name: str) -> Path:
        """The folder of one reference, failing the test when that reference failed."""
        failure = [line for line in self.stderr.splitlines() if line.startswith(f"docs: {name}:")]
        if failure or not (self.out / name).is_dir():
            pytest.fail(f"the {name} reference did not build:\n{self.stdout}\n{self.stderr}")
        return self.out / name


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("docs")
    for tool in (build_docs.PROTOC_GEN_DOC, build_docs.TYPEDOC):
        if not tool.exists():
            pytest.fail(f"{tool.relative_to(ROOT)} is missing: `make docs` builds it")
    result = subprocess.run(
        [sys.executable, BUILD_DOCS, "--out", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Built(out, result.returncode, result.stdout, result.stderr)


def _descriptors(tmp_path: Path) -> list[descriptor_pb2.FileDescriptorProto]:
    """The compiler's view of proto/sessionmemory (buf build), without imports."""
    image = tmp_path / "image.binpb"
    subprocess.run(
        [_buf(), "build", "proto", "--as-file-descriptor-set", "--exclude-imports", "-o", image],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    files = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes()).file
    return [f for f in files if f.name.startswith("sessionmemory/")]


def _messages(
    prefix: str, messages: list[descriptor_pb2.DescriptorProto]
) -> dict[str, descriptor_pb2.DescriptorProto]:
    found = {}
    for message in messages:
        name = f"{prefix}.{message.name}"
        found[name] = message
        found |= _messages(name, list(message.nested_type))
    return found


def test_proto_reference_describes_every_rpc_message_field_and_reason(
    built: Built, tmp_path: Path
) -> None:
    out = built.reference("proto")
    reference = json.loads((out / "reference.json").read_text())
    page = (out / "index.html").read_text()
    markdown = (out / "reference.md").read_text()
    described: dict[str, str] = {}
    for file in reference["files"]:
        for service in file["services"]:
            described[service["fullName"]] = service["description"]
            for method in service["methods"]:
                described[f"{service['fullName']}.{method['name']}"] = method["description"]
        for message in file["messages"]:
            described[message["fullName"]] = message["description"]
            for field in message["fields"]:
                described[f"{message['fullName']}.{field['name']}"] = field["description"]
        for enum in file["enums"]:
            described[enum["fullName"]] = enum["description"]
            for value in enum["values"]:
                described[f"{enum['fullName']}.{value['name']}"] = value["description"]

    expected: list[str] = []
    rpcs: list[str] = []
    reasons: list[str] = []
    for file in _descriptors(tmp_path):
        package = file.package
        for service in file.service:
            expected.append(f"{package}.{service.name}")
            for method in service.method:
                expected.append(f"{package}.{service.name}.{method.name}")
                if service.name == "MemoryService":
                    rpcs.append(method.name)
        enums = [(f"{package}.{e.name}", e) for e in file.enum_type]
        for name, message in _messages(package, list(file.message_type)).items():
            expected.append(name)
            expected.extend(f"{name}.{field.name}" for field in message.field)
            enums.extend((f"{name}.{e.name}", e) for e in message.enum_type)
        for name, enum in enums:
            expected.append(name)
            expected.extend(f"{name}.{value.name}" for value in enum.value)
            if name == "sessionmemory.v1.ErrorReason":
                reasons.extend(value.name for value in enum.value)

    assert len(rpcs) >= 20, rpcs
    assert len(reasons) >= 30, reasons
    assert [name for name in expected if not described.get(name, "").strip()] == []
    for rpc in rpcs:
        assert f"<td>{rpc}</td>" in page, rpc
        assert f"| {rpc} |" in markdown, rpc
    for reason in reasons:
        assert f"<td>{reason}</td>" in page, reason
        assert f"| {reason} |" in markdown, reason
    # The comment text itself, not only the names.
    assert "Get reads one value" in page
    assert "The API key is unknown or has been revoked." in markdown


def test_proto_check_lists_each_element_without_a_comment(tmp_path: Path) -> None:
    """protoc-gen-doc's real output for a proto with holes: the check names each hole."""
    if not build_docs.PROTOC_GEN_DOC.exists():
        pytest.fail("tools/docs/.bin/protoc-gen-doc is missing: `make docs` builds it")
    (tmp_path / "proto" / "demo" / "v1").mkdir(parents=True)
    (tmp_path / "proto" / "demo" / "v1" / "demo.proto").write_text(
        'syntax = "proto3";\n'
        "package demo.v1;\n"
        "// Demo is documented.\n"
        "service Demo {\n"
        "  rpc Ping(PingRequest) returns (PingResponse);\n"
        "}\n"
        "// PingRequest is documented; its field is not.\n"
        "message PingRequest {\n"
        "  string text = 1;\n"
        "}\n"
        "message PingResponse {\n"
        "  // Documented.\n"
        "  Mood mood = 1;\n"
        "}\n"
        "// Mood is documented.\n"
        "enum Mood {\n"
        "  // Documented.\n"
        "  MOOD_UNSPECIFIED = 0;\n"
        "\n"
        "  // Detached by the blank line below, so it documents nothing.\n"
        "\n"
        "  MOOD_GOOD = 1;\n"
        "}\n"
    )
    (tmp_path / "buf.gen.yaml").write_text(
        "version: v2\n"
        "inputs:\n"
        "  - directory: proto\n"
        "plugins:\n"
        f"  - local: {build_docs.PROTOC_GEN_DOC}\n"
        "    out: out\n"
        "    opt: json,reference.json\n"
        "    strategy: all\n"
    )
    subprocess.run([_buf(), "generate"], cwd=tmp_path, check=True, timeout=60)
    reference = json.loads((tmp_path / "out" / "reference.json").read_text())

    assert list(build_docs.undocumented(reference)) == [
        "demo/v1/demo.proto: rpc demo.v1.Demo.Ping",
        "demo/v1/demo.proto: field demo.v1.PingRequest.text",
        "demo/v1/demo.proto: message demo.v1.PingResponse",
        "demo/v1/demo.proto: enum value demo.v1.Mood.MOOD_GOOD",
    ]


def test_python_reference_documents_every_public_name(built: Built) -> None:
    out = built.reference("python")
    page = (out / "sessionmemory.html").read_text()
    for name in sessionmemory.__all__:
        assert f'id="{name}"' in page, f"{name} is missing from the Python reference"
    for member in (
        "MemoryClient.from_env",
        "MemoryClient.session",
        "Session.get",
        "Session.set",
        "AsyncMemoryClient.session",
        "AsyncSession.get",
    ):
        assert f'id="{member}"' in page, f"{member} is missing from the Python reference"
    # The generated stubs are not part of the documented API (no page of theirs).
    pages = [p.relative_to(out).with_suffix("").parts for p in out.rglob("*.html")]
    assert pages and not [p for p in pages if "v1" in p], pages


def test_python_reference_fails_on_a_pdoc_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A method named `list` shadows the builtin for the class's annotations: pdoc
    # cannot resolve them, warns, and the build must fail rather than print it.
    (tmp_path / "shadowed_demo.py").write_text(
        '"""A module pdoc warns about."""\n'
        "from __future__ import annotations\n\n\n"
        "class Store:\n"
        '    """A store."""\n\n'
        "    def list(self) -> list[int]:\n"
        '        """The items."""\n'
        "        return []\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(build_docs.DocsError, match=r"Error parsing type annotation list\[int\]"):
        build_docs.python_reference(tmp_path / "out", ["shadowed_demo"])


def _typescript_exports() -> list[str]:
    source = TS_INDEX.read_text()
    names = []
    for block in re.findall(r"export\s+(?:type\s+)?\{([^}]*)\}", source):
        for item in block.split(","):
            words = item.replace("type ", " ").split()
            if words:
                names.append(words[-1])  # `A as B` exports B
    names += re.findall(
        r"^export\s+(?:declare\s+)?(?:abstract\s+)?(?:class|function|const|interface|type|enum)"
        r"\s+(\w+)",
        source,
        re.MULTILINE,
    )
    return names


def test_typescript_reference_has_a_page_for_every_export(built: Built) -> None:
    out = built.reference("typescript")
    exports = _typescript_exports()
    assert "MemoryClient" in exports and "MemorySession" in exports, exports
    kinds = ("classes", "interfaces", "types", "functions", "variables", "enums")
    missing = [n for n in exports if not any((out / k / f"{n}.html").exists() for k in kinds)]
    assert missing == []
    client = (out / "classes" / "MemoryClient.html").read_text()
    for member in ("fromEnv", "session", "getLimits", "raw"):
        assert f'id="{member.lower()}"' in client, f"MemoryClient.{member} is not documented"
    session = (out / "classes" / "MemorySession.html").read_text()
    assert 'id="get"' in session and 'id="getjson"' in session


def test_index_links_each_reference(built: Built) -> None:
    assert built.returncode == 0, f"make docs would fail:\n{built.stdout}\n{built.stderr}"
    index = (built.out / "index.html").read_text()
    links = re.findall(r'href="([^"]+)"', index)
    assert links == ["proto/index.html", "python/sessionmemory.html", "typescript/index.html"]
    for link in links:
        assert (built.out / link).is_file(), link
