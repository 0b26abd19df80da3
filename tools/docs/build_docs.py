"""Build the API references: proto, Python client, TypeScript client (`make docs`).

    python tools/docs/build_docs.py [--out build/docs] [--only proto,python,typescript]

Each reference fails the build on a problem instead of printing a warning:

- proto: `buf lint` (buf.yaml's COMMENTS rules), then protoc-gen-doc through
  `buf generate --template tools/docs/buf.gen.docs.yaml`, then a check that every
  service, RPC, message, field, enum and enum value reached the reference with a
  description (a comment buf does not attach, such as one split off by a blank
  line, would leave a hole there).
- python: pdoc on the `sessionmemory` package (not its generated `v1` stubs); any
  warning pdoc raises (an annotation it cannot resolve, a broken reference) fails.
- typescript: TypeDoc with tools/docs/typedoc.config.mjs (treatWarningsAsErrors, and
  validation of links and of types the public API uses but does not export).

The tools come from `make docs`: protoc-gen-doc in tools/docs/.bin, TypeDoc in
tools/docs/node_modules, the client's own node_modules for its types, and buf and
pdoc from the virtualenv.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS_TOOLS = ROOT / "tools" / "docs"
PROTOC_GEN_DOC = DOCS_TOOLS / ".bin" / "protoc-gen-doc"
TYPEDOC = DOCS_TOOLS / "node_modules" / ".bin" / "typedoc"
CLIENT_NODE_MODULES = ROOT / "clients" / "typescript" / "node_modules"
PYTHON_MODULES = ("sessionmemory", "!sessionmemory.v1")


class DocsError(Exception):
    """A reference could not be built, or was built with problems (the message lists them)."""


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise DocsError(f"{path.relative_to(ROOT)} is missing ({what}): `make docs` installs it")


def _run(args: Sequence[str | Path], what: str) -> None:
    # Output goes straight to the terminal: buf's and TypeDoc's own messages name the
    # file and line, so they are shown as they are.
    # TypeDoc colours its output even into a pipe or a CI log unless NO_COLOR is set.
    env = os.environ if sys.stdout.isatty() else {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        raise DocsError(f"{what} failed (exit status {result.returncode}); see the output above")


def undocumented(reference: dict[str, Any]) -> Iterator[str]:
    """Yield each element of protoc-gen-doc's JSON reference that has no description."""
    for file in reference["files"]:
        for service in file["services"]:
            if not service["description"].strip():
                yield f"{file['name']}: service {service['fullName']}"
            for method in service["methods"]:
                if not method["description"].strip():
                    yield f"{file['name']}: rpc {service['fullName']}.{method['name']}"
        for message in file["messages"]:
            if not message["description"].strip():
                yield f"{file['name']}: message {message['fullName']}"
            for field in message["fields"]:
                if not field["description"].strip():
                    yield f"{file['name']}: field {message['fullName']}.{field['name']}"
        for enum in file["enums"]:
            if not enum["description"].strip():
                yield f"{file['name']}: enum {enum['fullName']}"
            for value in enum["values"]:
                if not value["description"].strip():
                    yield f"{file['name']}: enum value {enum['fullName']}.{value['name']}"


def proto_reference(out: Path) -> None:
    """Build out/index.html, reference.md and reference.json from the proto comments."""
    _require(PROTOC_GEN_DOC, "protoc-gen-doc, built from tools/docs/go.mod")
    buf = shutil.which("buf")
    if buf is None:
        raise DocsError("buf is not on PATH: `make install` puts it in .venv/bin")
    _run([buf, "lint"], "buf lint (every element of the proto needs a comment)")
    _run(
        [buf, "generate", "--template", DOCS_TOOLS / "buf.gen.docs.yaml", "-o", out],
        "protoc-gen-doc",
    )
    # protoc-gen-doc's page loads a web font from Google and a stylesheet.css it does
    # not write (its styles are inline): drop both links, so the page works offline.
    page = out / "index.html"
    html = page.read_text(encoding="utf-8")
    for link in (
        '<link rel="stylesheet" type="text/css" href="https://fonts.googleapis.com/css?family=Ubuntu:400,700,400italic"/>',
        '<link rel="stylesheet" type="text/css" href="stylesheet.css"/>',
    ):
        if link not in html:
            raise DocsError(f"protoc-gen-doc's page changed: no {link}")
        html = html.replace(link, "")
    page.write_text(html, encoding="utf-8")
    reference = json.loads((out / "reference.json").read_text(encoding="utf-8"))
    missing = list(undocumented(reference))
    if missing:
        raise DocsError(
            f"{len(missing)} proto elements have no description in the reference "
            "(write a comment directly above each one):\n  " + "\n  ".join(missing)
        )


def python_reference(out: Path, modules: Sequence[str] = PYTHON_MODULES) -> None:
    """Build the pdoc reference of `modules` into out/; any pdoc warning fails."""
    import pdoc  # noqa: PLC0415 - only this step needs it (and only the venv has it)
    import pdoc.render  # noqa: PLC0415

    pdoc.render.configure(
        docformat="google",
        footer_text="Session Memory Python client",
        show_source=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pdoc.pdoc(*modules, output_directory=out)
        except RuntimeError as e:  # pdoc's "Error importing X", caused by the import error
            raise DocsError(f"{e}: {e.__cause__!r}") from e
    if caught:
        lines = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        raise DocsError(f"pdoc warned {len(lines)} times:\n  " + "\n  ".join(lines))


def typescript_reference(out: Path) -> None:
    """Build the TypeDoc reference of the TypeScript client into out/; warnings fail."""
    _require(TYPEDOC, "TypeDoc, from tools/docs/package-lock.json")
    _require(CLIENT_NODE_MODULES, "the TypeScript client's dependencies")
    _run(
        [
            TYPEDOC,
            "--options",
            DOCS_TOOLS / "typedoc.config.mjs",
            "--out",
            out,
            "--logLevel",
            "Warn",
        ],
        "TypeDoc",
    )


REFERENCES: dict[str, tuple[str, str, str, Callable[[Path], None]]] = {
    # name: (title, what it covers, the page to open, builder)
    "proto": (
        "gRPC API (proto)",
        "MemoryService, its messages and the ErrorReason values, from proto/sessionmemory/v1."
        " Also as Markdown: proto/reference.md.",
        "index.html",
        proto_reference,
    ),
    "python": (
        "Python client",
        "The sessionmemory package: MemoryClient, AsyncMemoryClient, sessions, errors.",
        "sessionmemory.html",
        python_reference,
    ),
    "typescript": (
        "TypeScript client",
        "@session-memory/client: MemoryClient, MemorySession, errors and result types.",
        "index.html",
        typescript_reference,
    ),
}


def write_index(out: Path) -> None:
    """Write out/index.html linking each reference that was built."""
    items = "\n".join(
        f'    <li><a href="{name}/{page}">{html.escape(title)}</a>: {html.escape(about)}</li>'
        for name, (title, about, page, _) in REFERENCES.items()
        if (out / name / page).exists()
    )
    (out / "index.html").write_text(
        f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Session Memory API reference</title>
  <style>body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto;
    padding: 0 1rem; line-height: 1.5 }} li {{ margin: .5rem 0 }}</style>
</head>
<body>
  <h1>Session Memory API reference</h1>
  <p>Generated by <code>make docs</code> from the proto comments and the clients' docstrings.
  The proto reference is the contract; the clients wrap it.</p>
  <ul>
{items}
  </ul>
</body>
</html>
""",
        encoding="utf-8",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Build the references named by --only (all by default) into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "docs")
    parser.add_argument("--only", default=",".join(REFERENCES), help="comma-separated")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(REFERENCES))
    if unknown:
        parser.error(f"unknown reference {', '.join(unknown)}; choose from {', '.join(REFERENCES)}")
    out: Path = args.out.resolve()
    failed = []
    for name in names:
        target = out / name
        shutil.rmtree(target, ignore_errors=True)  # no page left over from an older build
        target.mkdir(parents=True)
        started = time.monotonic()
        try:
            REFERENCES[name][3](target)
        except DocsError as e:
            print(f"docs: {name}: {e}", file=sys.stderr, flush=True)
            failed.append(name)
        else:
            print(
                f"docs: {name} reference in {time.monotonic() - started:.1f} s: {target}",
                flush=True,
            )
    write_index(out)
    if failed:
        print(f"docs: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"docs: open {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
