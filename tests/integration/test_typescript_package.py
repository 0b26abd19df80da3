"""The TypeScript client as a newcomer installs it: the packed tarball, in a project of their own.

`scratch_install` does what the README asks of someone new, once per run: `npm pack`
in clients/typescript (its `prepack` builds dist/esm and dist/cjs), a fresh project in
a temporary directory, `npm install <tarball> typescript @types/node` (the client's
dependencies come from the npm registry, as a user's would), the examples/typescript
programs copied in and compiled with strict `tsc` (ES modules, `NodeNext`) against the
installed package. test_examples_typescript.py runs every compiled example from it.

Here:
- the tarball holds LICENSE, README.md, the package.json and the two builds with
  their .d.ts files, and nothing else: no sources, tests or tools, no source map;
- the install prints no EBADENGINE on this Node (the oldest the package names);
- the compiled registration example prints its transcript against the real server,
  as an ES module and compiled again as CommonJS (`require`, with the package's CJS
  types), and the package's declared types survive packing (`getJson` fallbacks).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import ServerThread
from ..examples import (
    EXAMPLES,
    FLOWS,
    RUN_TIMEOUT,
    check_example,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
TS_EXAMPLES = EXAMPLES / "typescript"
NPM_TIMEOUT = 300  # seconds for one npm or tsc command (an install from a cold cache)
# The scratch install happens in the first test's setup, which pytest-timeout counts.
INSTALL_TIMEOUT = 3 * NPM_TIMEOUT

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + RUN_TIMEOUT)


@dataclass(frozen=True)
class Scratch:
    """A newcomer's project with the packed client installed and the examples compiled."""

    root: Path
    tarball: Path
    files: list[str]  # the tarball's paths, as `npm pack --json` lists them
    install_log: str  # what `npm install` printed
    compiled_with: list[str]  # the files `tsc` read to compile the examples

    def program(self, flow: str) -> Path:
        """The compiled ES module of a flow's example."""
        return self.root / "dist" / f"{flow}.js"


def run(
    args: list[str], cwd: Path, timeout: float = NPM_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, or fail showing what it printed."""
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} (in {cwd}) exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
    return done


def dev_dependency(name: str) -> str:
    """`name@range` as examples/typescript/package.json asks for it."""
    package = json.loads((TS_EXAMPLES / "package.json").read_text(encoding="utf-8"))
    return f"{name}@{package['devDependencies'][name]}"


# Compiled against the installed .d.ts files; each @ts-expect-error must be an error.
EXPECTATIONS = """\
import { MemoryClient, MemoryApiError, type MemorySession } from "@session-memory/client";
interface Cart { items: string[]; total: number }
export async function handler(memory: MemorySession): Promise<void> {
  const cart: Cart = await memory.getJson<Cart>("cart", { items: [], total: 0 });
  const maybe: Cart | null = await memory.getJson<Cart>("cart");
  // @ts-expect-error without a fallback the result may be null
  const notNull: Cart = await memory.getJson<Cart>("cart");
  const step: string = await memory.get("step", "start");
  const attempts: number = await memory.get("pin_attempts", 0);
  // @ts-expect-error a number fallback gives a number
  const wrong: string = await memory.get("pin_attempts", 0);
  void [cart, maybe, notNull, step, attempts, wrong, MemoryClient, MemoryApiError];
}
"""


_SCRATCH: dict[str, Scratch] = {}  # the one install of the run, once made


def scratch_install(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """Pack the client, install it into a fresh project and compile the examples: once a run."""
    if "done" in _SCRATCH:
        return _SCRATCH["done"]
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed: the TypeScript client's tests need Node.js 20+")
    assert (CLIENT / "node_modules").is_dir(), (
        "clients/typescript has no node_modules: make install"
    )
    packs = tmp_path_factory.mktemp("npm-pack")
    out = run(["npm", "pack", "--json", "--pack-destination", str(packs)], CLIENT).stdout
    (packed,) = json.loads(out[out.index("[") :])  # after whatever prepack printed
    tarball = packs / packed["filename"]
    root = tmp_path_factory.mktemp("newcomer")
    (root / "package.json").write_text(
        json.dumps({"name": "newcomer", "private": True, "type": "module"}), encoding="utf-8"
    )
    installed = run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefer-offline", str(tarball),
         dev_dependency("typescript"), dev_dependency("@types/node")],
        root,
    )  # fmt: skip
    for source in [*TS_EXAMPLES.glob("*.ts"), TS_EXAMPLES / "tsconfig.json"]:
        shutil.copy(source, root / source.name)
    (root / "expectations.ts").write_text(EXPECTATIONS, encoding="utf-8")
    compiled = run(["npx", "--no-install", "tsc", "-p", ".", "--listFiles"], root).stdout
    _SCRATCH["done"] = Scratch(
        root, tarball, [f["path"] for f in packed["files"]],
        installed.stdout + installed.stderr, compiled.splitlines(),
    )  # fmt: skip
    return _SCRATCH["done"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """The newcomer's project (shared with test_examples_typescript.py)."""
    return scratch_install(tmp_path_factory)


@pytest.fixture(scope="module")
def newcomer_key(server: ServerThread) -> str:
    """A tenant of its own: the newcomer sees nothing the other tests wrote."""
    return server.create_key("newcomer-typescript")


def test_the_tarball_ships_the_builds_license_and_readme_only(scratch: Scratch) -> None:
    files = set(scratch.files)
    for needed in [
        "LICENSE", "README.md", "package.json",
        "dist/esm/index.js", "dist/esm/index.d.ts",
        "dist/cjs/index.js", "dist/cjs/index.d.ts", "dist/cjs/package.json",
    ]:  # fmt: skip
        assert needed in files, f"the tarball lacks {needed}: {sorted(files)}"
    shipped = (
        r"LICENSE|README\.md|package\.json|dist/cjs/package\.json|dist/(esm|cjs)/.+\.(js|d\.ts)"
    )
    assert [f for f in sorted(files) if not re.fullmatch(shipped, f)] == []
    assert not [f for f in files if f.startswith(("src/", "test/", "tools/", "scripts/"))]
    # Every .js has its declarations, in both builds.
    for js in (f for f in files if f.endswith(".js")):
        assert js.removesuffix(".js") + ".d.ts" in files, f"{js} has no .d.ts"
    # No source map: the sources are not shipped, so a map would point at nothing.
    installed = scratch.root / "node_modules" / "@session-memory" / "client"
    assert not [p for p in installed.rglob("*.js") if "sourceMappingURL" in p.read_text("utf-8")]
    manifest = json.loads((installed / "package.json").read_text(encoding="utf-8"))
    assert set(manifest["exports"]["."]) == {"import", "require"}


def test_the_install_prints_no_engine_warning(scratch: Scratch) -> None:
    """Every dependency npm chose runs on this Node; the README names the engines' minimum."""
    assert "EBADENGINE" not in scratch.install_log, scratch.install_log
    installed = scratch.root / "node_modules" / "@session-memory" / "client"
    engines = json.loads((installed / "package.json").read_text("utf-8"))["engines"]["node"]
    oldest = re.fullmatch(r">=(\d+)", engines)
    assert oldest, f"engines.node should be >=MAJOR, not {engines}"
    readme = (installed / "README.md").read_text(encoding="utf-8")
    assert f"Node.js ≥ {oldest[1]}" in readme.splitlines()[0], "README's title names another Node"


def test_the_examples_compiled_against_the_esm_build(scratch: Scratch) -> None:
    """`import` under NodeNext picks the package's `import` condition and its types."""
    package = "node_modules/@session-memory/client/"
    read = [f.replace(os.sep, "/") for f in scratch.compiled_with if package in f]
    assert any(f.endswith(package + "dist/esm/index.d.ts") for f in read), read
    assert not [f for f in read if "/dist/cjs/" in f], read


def test_registration_runs_from_the_installed_package(
    scratch: Scratch, server: ServerThread, newcomer_key: str
) -> None:
    check_example(
        "registration", ["node", scratch.program("registration")], server.address, newcomer_key
    )


def test_registration_compiled_as_commonjs_runs_with_require(
    scratch: Scratch, server: ServerThread, newcomer_key: str
) -> None:
    """A CommonJS project: `import` compiles to `require()`, typed by the package's CJS build."""
    cjs = scratch.root / "cjs"
    cjs.mkdir(exist_ok=True)
    (cjs / "package.json").write_text('{"type": "commonjs"}', encoding="utf-8")
    shutil.copy(TS_EXAMPLES / "registration.ts", cjs / "registration.ts")
    config = json.loads((TS_EXAMPLES / "tsconfig.json").read_text(encoding="utf-8"))
    config["compilerOptions"]["outDir"] = "out"
    (cjs / "tsconfig.json").write_text(json.dumps(config), encoding="utf-8")
    listed = run(["npx", "--no-install", "tsc", "-p", ".", "--listFiles"], cjs).stdout
    read = [f for f in listed.replace(os.sep, "/").splitlines() if "@session-memory/client/" in f]
    assert any(f.endswith("dist/cjs/index.d.ts") for f in read), read
    assert not [f for f in read if "/dist/esm/" in f], read
    compiled = (cjs / "out" / "registration.js").read_text(encoding="utf-8")
    assert 'require("@session-memory/client")' in compiled
    check_example(
        "registration", ["node", cjs / "out" / "registration.js"], server.address, newcomer_key
    )
    resolved = subprocess.run(
        ["node", "-p", "require.resolve('@session-memory/client')"],
        cwd=cjs, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert resolved.stdout.strip().endswith(os.path.join("dist", "cjs", "index.js"))


def test_the_packed_types_type_a_handler_as_the_readme_says(scratch: Scratch) -> None:
    """EXPECTATIONS compiled with the examples against the installed .d.ts files.

    An unmet `@ts-expect-error` is itself a compile error, so the setup's `tsc` fails
    if a fallback stops typing the result, as well as when a type is wrong.
    """
    assert any(f.endswith("/expectations.ts") for f in scratch.compiled_with)
    assert set(FLOWS) <= {p.stem for p in scratch.root.glob("dist/*.js")}
