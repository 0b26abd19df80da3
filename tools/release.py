"""Bump every version of Session Memory together, or check that they agree.

    python tools/release.py 0.2.0        # bump everything to 0.2.0, date the CHANGELOG
    python tools/release.py --check      # exit 1 unless every version says the same

The server, the three clients and the image are versioned together (RELEASING.md):

- pyproject.toml: the server's version and its exact pin on session-memory-client;
- clients/python/pyproject.toml: the client's version;
- clients/typescript/package.json and package-lock.json (its own two version fields);
- deploy/kubernetes/kustomization.yaml: the image tag the manifests deploy;
- any `__version__ = "..."` in the two Python packages' __init__.py;
- CHANGELOG.md: the [Unreleased] section becomes [X.Y.Z] - date, under a new empty one.

Go has no version file: its version is the tag `clients/go/vX.Y.Z` (RELEASING.md).
--root runs on a copy of the tree (the tests do).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

VERSION = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
CLIENT = "session-memory-client"
UNRELEASED = "## [Unreleased]"


class ReleaseError(Exception):
    """Something that stops a bump; the message says what and where."""


@dataclass(frozen=True)
class Field:
    """One place that holds the version: how to read it and how to rewrite it."""

    path: str
    what: str
    read: Callable[[str], str | None]
    write: Callable[[str, str], str]
    optional: bool = False  # a file that may not define it (e.g. __version__)


def _toml_version(text: str) -> str | None:
    version = tomllib.loads(text).get("project", {}).get("version")
    return str(version) if version is not None else None


def _toml_write(text: str, version: str) -> str:
    # The first `version = "..."` line is [project]'s in both pyproject files (checked).
    new, count = re.subn(r'(?m)^version = "[^"]*"$', f'version = "{version}"', text, count=1)
    if count != 1 or _toml_version(new) != version:
        raise ReleaseError('no `version = "..."` line of [project] to rewrite')
    return new


def _pin(text: str) -> str | None:
    for dependency in tomllib.loads(text)["project"]["dependencies"]:
        match = re.fullmatch(rf"{CLIENT}\s*==\s*(\S+)", dependency.strip())
        if match:
            return match[1]
    return None


def _pin_write(text: str, version: str) -> str:
    new, count = re.subn(rf'"{CLIENT}==[^"]*"', f'"{CLIENT}=={version}"', text)
    if count != 1:
        raise ReleaseError(f'expected one "{CLIENT}==..." dependency, found {count}')
    return new


def _json_fields(*keys: tuple[str, ...]) -> tuple[Callable[[str], str | None], Callable[..., str]]:
    """Read/write the version at each key path of an npm JSON file (all must agree)."""

    def get(data: dict[str, object], key: tuple[str, ...]) -> object:
        node: object = data
        for part in key:
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def read(text: str) -> str | None:
        data = json.loads(text)
        found = {str(get(data, key)) for key in keys}
        return found.pop() if len(found) == 1 else " / ".join(sorted(found))

    def write(text: str, version: str) -> str:
        data = json.loads(text)
        if _dump(data) != text:
            raise ReleaseError("not in npm's own JSON layout; run `npm install` first")
        for key in keys:
            node = data
            for part in key[:-1]:
                node = node[part]
            node[key[-1]] = version
        return _dump(data)

    return read, write


def _dump(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


_DUNDER = re.compile(r'(?m)^__version__ = "([^"]*)"$')


def _dunder(text: str) -> str | None:
    match = _DUNDER.search(text)
    return match[1] if match else None


def _dunder_write(text: str, version: str) -> str:
    return _DUNDER.sub(f'__version__ = "{version}"', text, count=1)


_TAG = re.compile(r'(?m)^(\s*newTag:\s*)"([^"]*)"$')


def _tag(text: str) -> str | None:
    match = _TAG.search(text)
    return match[2] if match else None


def _tag_write(text: str, version: str) -> str:
    new, count = _TAG.subn(rf'\g<1>"{version}"', text)
    if count != 1:
        raise ReleaseError(f"expected one quoted newTag, found {count}")
    return new


_package_read, _package_write = _json_fields(("version",))
_lock_read, _lock_write = _json_fields(("version",), ("packages", "", "version"))

FIELDS = [
    Field("pyproject.toml", "the server's version", _toml_version, _toml_write),
    Field("pyproject.toml", f"the server's pin on {CLIENT}", _pin, _pin_write),
    Field("clients/python/pyproject.toml", "the Python client's version", _toml_version,
          _toml_write),
    Field("clients/typescript/package.json", "the TypeScript client's version",
          _package_read, _package_write),
    Field("clients/typescript/package-lock.json", "the lock's own version fields",
          _lock_read, _lock_write),
    Field("deploy/kubernetes/kustomization.yaml", "the image tag deployed", _tag, _tag_write),
    Field("server/src/sessionmemory_server/__init__.py", "__version__", _dunder,
          _dunder_write, optional=True),
    Field("clients/python/src/sessionmemory/__init__.py", "__version__", _dunder,
          _dunder_write, optional=True),
]  # fmt: skip


def versions(root: Path) -> list[tuple[Field, str]]:
    """Every version field's current value (optional fields only where defined)."""
    found = []
    for field in FIELDS:
        path = root / field.path
        if not path.exists():
            if field.optional:
                continue
            raise ReleaseError(f"{field.path}: missing")
        value = field.read(path.read_text(encoding="utf-8"))
        if value is None:
            if field.optional:
                continue
            raise ReleaseError(f"{field.path}: {field.what} not found")
        found.append((field, value))
    return found


def check(root: Path) -> str:
    """The one version every field holds; ReleaseError listing them when they differ."""
    found = versions(root)
    if len({value for _, value in found}) != 1:
        lines = "\n".join(f"  {f.path}: {f.what} = {v}" for f, v in found)
        raise ReleaseError(f"the versions disagree:\n{lines}")
    changelog = root / "CHANGELOG.md"
    if UNRELEASED not in changelog.read_text(encoding="utf-8").splitlines():
        raise ReleaseError(f"CHANGELOG.md: no `{UNRELEASED}` section")
    return found[0][1]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def move_changelog(text: str, version: str, date: str) -> str:
    """[Unreleased]'s entries become the version's section, under a new empty [Unreleased]."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.rstrip("\n") == UNRELEASED)
    end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    if not "".join(lines[at + 1 : end]).strip():
        raise ReleaseError("CHANGELOG.md: the [Unreleased] section is empty: nothing to release")
    if any(line.startswith(f"## [{version}]") for line in lines):
        raise ReleaseError(f"CHANGELOG.md already has a [{version}] section")
    heading = f"## [{version}] - {date}\n"
    return "".join([*lines[:at], UNRELEASED + "\n", "\n", heading, *lines[at + 1 :]])


def bump(root: Path, version: str, date: str) -> list[str]:
    """Set every version to `version` and move the CHANGELOG; the files changed."""
    if not VERSION.fullmatch(version):
        raise ReleaseError(f"{version!r} is not a version X.Y.Z (e.g. 0.2.0)")
    current = check(root)
    if _key(version) <= _key(current):
        raise ReleaseError(f"{version} is not newer than the current {current}")
    major = _key(version)[0]
    go_mod = (root / "clients" / "go" / "go.mod").read_text(encoding="utf-8")
    if major >= 2 and not re.search(rf"(?m)^module \S+/v{major}$", go_mod):
        raise ReleaseError(
            f"a v{major} Go module needs the /v{major} suffix in clients/go/go.mod's module path"
        )
    # Everything is computed before anything is written: a refusal changes no file.
    texts: dict[str, str] = {}
    for field, _ in versions(root):
        text = texts.get(field.path) or (root / field.path).read_text(encoding="utf-8")
        texts[field.path] = field.write(text, version)
    changelog = (root / "CHANGELOG.md").read_text(encoding="utf-8")
    texts["CHANGELOG.md"] = move_changelog(changelog, version, date)
    for path, text in texts.items():
        (root / path).write_text(text, encoding="utf-8")
    if check(root) != version:
        raise ReleaseError("the bump left a version behind")  # a field's writer is wrong
    return sorted(texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", nargs="?", help="the new version, X.Y.Z")
    parser.add_argument("--check", action="store_true", help="only check that versions agree")
    parser.add_argument("--date", default=datetime.date.today().isoformat(),
                        help="the release date in the CHANGELOG (default: today)")  # fmt: skip
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    if args.check == bool(args.version):
        parser.error("give a version to bump to, or --check")
    try:
        if args.check:
            version = check(args.root)
            print(f"every version is {version} ({len(versions(args.root))} fields)")
            return 0
        changed = bump(args.root, args.version, args.date)
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    print(f"bumped to {args.version}: {', '.join(changed)}")
    print(
        "next: review `git diff`, commit, then tag and publish as RELEASING.md says:\n"
        f"  git tag -a v{args.version} -m v{args.version}\n"
        f"  git tag -a clients/go/v{args.version} -m clients/go/v{args.version}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
