"""A value, a JSON document and a file written from each language (Python, TypeScript,
Go) read back identical, byte for byte, from all three."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from sessionmemory import MemoryClient

ROOT = Path(__file__).resolve().parents[2]
TS_TOOL = ROOT / "clients/typescript/dist/tools/xlang.js"
GO_DIR = ROOT / "clients/go"
LANGS = ["python", "typescript", "go"]


def text(lang: str) -> str:
    return f"héllo ✓ 😀 from {lang}"


def doc(lang: str) -> dict[str, Any]:
    return {"lang": lang, "items": [1, 2.5, "x"], "nested": {"ok": True}}


def file(lang: str) -> bytes:
    return ("%PDF-1.4\n" + f"{lang}\n" * 5000).encode()


def python_side(mode: str, address: str, key: str, session: str, langs: list[str]) -> Any:
    with MemoryClient(address, api_key=key) as client:
        memory = client.session(session)
        if mode == "write":
            lang = langs[0]
            memory.set(f"{lang}_text", text(lang), ttl=600)
            memory.set_json(f"{lang}_json", doc(lang), ttl=600)
            memory.set_file(f"{lang}_file", file(lang), ttl=600, mime="application/pdf")
            return None
        out: dict[str, Any] = {}
        for lang in langs:
            out[f"{lang}_text"] = memory.get(f"{lang}_text")
            out[f"{lang}_json"] = memory.get_json(f"{lang}_json")
            handle = memory.get_file(f"{lang}_file")
            assert handle is not None
            out[f"{lang}_file"] = {
                "mime": handle.info.mime_type,
                "sha256": hashlib.sha256(handle.to_raw()).hexdigest(),
            }
        return out


def other_side(lang: str, mode: str, address: str, key: str, session: str, langs: list[str]) -> Any:
    if lang == "typescript":
        if not TS_TOOL.exists():
            pytest.fail(f"{TS_TOOL} is missing: build the TypeScript client first (make test does)")
        cmd, cwd = ["node", str(TS_TOOL)], ROOT
    else:
        cmd, cwd = ["go", "run", "./cmd/xlang"], GO_DIR
    done = subprocess.run(
        [*cmd, mode, address, key, session, *langs],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{lang} {mode} failed: {done.stderr}"
    return json.loads(done.stdout) if mode == "read" else None


def side(lang: str, mode: str, address: str, key: str, session: str, langs: list[str]) -> Any:
    if lang == "python":
        return python_side(mode, address, key, session, langs)
    return other_side(lang, mode, address, key, session, langs)


def test_each_language_reads_what_every_language_wrote(server: Any, api_key: str) -> None:
    session = f"xlang-{uuid.uuid4().hex}"
    for writer in LANGS:
        side(writer, "write", server.address, api_key, session, [writer])
    expected = {}
    for lang in LANGS:
        expected[f"{lang}_text"] = text(lang)
        expected[f"{lang}_json"] = doc(lang)
        expected[f"{lang}_file"] = {
            "mime": "application/pdf",
            "sha256": hashlib.sha256(file(lang)).hexdigest(),
        }
    for reader in LANGS:
        got = side(reader, "read", server.address, api_key, session, LANGS)
        assert got == expected, f"{reader} read something else"
