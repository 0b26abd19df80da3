"""tools/release.py: every version agrees now, and a bump moves them all together.

The bump runs on a copy of the versioned files in tmp_path (--root), never on the tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "release.py"
FILES = [
    "pyproject.toml",
    "clients/python/pyproject.toml",
    "clients/typescript/package.json",
    "clients/typescript/package-lock.json",
    "clients/go/go.mod",
    "deploy/kubernetes/kustomization.yaml",
    "server/src/sessionmemory_server/__init__.py",
    "clients/python/src/sessionmemory/__init__.py",
    "CHANGELOG.md",
]


def release(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def current() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The versioned files, copied to where they sit in the repository."""
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def snapshot(root: Path) -> dict[str, str]:
    return {name: (root / name).read_text() for name in FILES}


def test_every_version_agrees_now() -> None:
    done = release("--check")
    assert done.returncode == 0, done.stderr
    version = current()
    assert done.stdout.startswith(f"every version is {version} ")
    # The same facts, read without the script.
    client = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package = json.loads((ROOT / "clients/typescript/package.json").read_text())
    lock = json.loads((ROOT / "clients/typescript/package-lock.json").read_text())
    assert client["project"]["version"] == version
    assert f"session-memory-client=={version}" in server["project"]["dependencies"]
    assert package["version"] == lock["version"] == lock["packages"][""]["version"] == version


def test_a_bump_moves_every_version_and_the_changelog(tree: Path) -> None:
    # Something to release, whatever the tree's [Unreleased] holds right now.
    changelog_path = tree / "CHANGELOG.md"
    changelog_path.write_text(
        changelog_path.read_text().replace(
            "## [Unreleased]\n", "## [Unreleased]\n\n### Fixed\n- An entry of the test.\n", 1
        )
    )
    before = snapshot(tree)
    done = release("99.0.0", "--root", tree, "--date", "2030-01-02")
    # A major version of 2+ needs the Go module's /v99 suffix: refused, nothing written.
    assert done.returncode == 1 and "/v99 suffix" in done.stderr, done.stderr
    assert snapshot(tree) == before

    major, minor, _ = current().split(".")
    new = f"{major}.{int(minor) + 1}.0"
    done = release(new, "--root", tree, "--date", "2030-01-02")
    assert done.returncode == 0, done.stderr
    assert f"git tag -a v{new}" in done.stdout and f"clients/go/v{new}" in done.stdout
    assert release("--check", "--root", tree).stdout.startswith(f"every version is {new} ")

    server = tomllib.loads((tree / "pyproject.toml").read_text())
    assert server["project"]["version"] == new
    assert f"session-memory-client=={new}" in server["project"]["dependencies"]
    client = tomllib.loads((tree / "clients/python/pyproject.toml").read_text())
    assert client["project"]["version"] == new
    package = json.loads((tree / "clients/typescript/package.json").read_text())
    old_package = json.loads(before["clients/typescript/package.json"])
    assert package == {**old_package, "version": new}  # nothing else changed
    lock = json.loads((tree / "clients/typescript/package-lock.json").read_text())
    assert lock["version"] == lock["packages"][""]["version"] == new
    old_lock = json.loads(before["clients/typescript/package-lock.json"])
    assert lock["packages"].keys() == old_lock["packages"].keys()
    assert f'newTag: "{new}"' in (tree / "deploy/kubernetes/kustomization.yaml").read_text()

    changelog = (tree / "CHANGELOG.md").read_text()
    old = before["CHANGELOG.md"]
    entries = old.split("## [Unreleased]\n", 1)[1]
    assert f"## [Unreleased]\n\n## [{new}] - 2030-01-02\n" + entries in changelog
    # Only the version lines changed in the pyproject files.
    for name in ("pyproject.toml", "clients/python/pyproject.toml"):
        changed = set(before[name].splitlines()) ^ set((tree / name).read_text().splitlines())
        assert all(current() in line or new in line for line in changed), changed

    # Released: the new [Unreleased] is empty, so a second bump has nothing to release.
    again = release(f"{major}.{int(minor) + 1}.1", "--root", tree)
    assert again.returncode == 1 and "[Unreleased] section is empty" in again.stderr


def test_check_names_the_field_that_drifted(tree: Path) -> None:
    path = tree / "clients/python/pyproject.toml"
    path.write_text(path.read_text().replace(f'version = "{current()}"', 'version = "7.7.7"'))
    done = release("--check", "--root", tree)
    assert done.returncode == 1
    assert "clients/python/pyproject.toml: the Python client's version = 7.7.7" in done.stderr
    # A bump refuses to start from versions that disagree.
    before = snapshot(tree)
    assert release("8.0.0", "--root", tree).returncode == 1
    assert snapshot(tree) == before


@pytest.mark.parametrize(("version", "reason"), [("1.2", "not a version"), ("0.0.1", "not newer")])
def test_a_bad_version_is_refused_and_changes_nothing(
    tree: Path, version: str, reason: str
) -> None:
    before = snapshot(tree)
    done = release(version, "--root", tree)
    assert done.returncode == 1 and reason in done.stderr, done.stderr
    assert snapshot(tree) == before
