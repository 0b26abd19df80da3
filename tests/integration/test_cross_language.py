"""The three clients (Python, TypeScript, Go) on the same sessions of the real server.

- A value, a JSON document and a file written from each language read back identical,
  byte for byte, from all three.
- Structured memory across languages: Python registers the user / conversation / order
  schema and initializes the document, TypeScript's and Go's outside-the-agent updates
  merge into it, and all three read the same document, revision, paths and schema; a
  watch in each language sees the others' changes in revision order; a write against
  the schema is refused the same way from each language and changes nothing.

TypeScript runs `clients/typescript/dist/tools/xlang.js` (built from `tools/xlang.ts`),
Go `clients/go/cmd/xlang` (built once per module); both print JSON on stdout.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from sessionmemory import ChangeStream, MemoryApiError, MemoryClient, Session

from ..conftest import ServerThread

ROOT = Path(__file__).resolve().parents[2]
TS_TOOL = ROOT / "clients/typescript/dist/tools/xlang.js"
GO_DIR = ROOT / "clients/go"
LANGS = ["python", "typescript", "go"]
TOOL_TIMEOUT = 120  # seconds for one run of a tool
# The first test also builds the Go tool, from scratch on a fresh clone.
pytestmark = pytest.mark.timeout(300)


def text(lang: str) -> str:
    return f"héllo ✓ 😀 from {lang}"


def doc(lang: str) -> dict[str, Any]:
    return {"lang": lang, "items": [1, 2.5, "x"], "nested": {"ok": True}}


def file(lang: str) -> bytes:
    return ("%PDF-1.4\n" + f"{lang}\n" * 5000).encode()


# --- the agent's memory: the docs' user / conversation / order example -------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "user": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "language": {"type": "string", "default": "en"},
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        "conversation": {
            "type": "object",
            "properties": {
                "topic": {"type": "string"},
                "turns": {"type": "integer", "minimum": 0, "default": 0},
            },
            "required": ["topic"],
            "additionalProperties": False,
        },
        "order": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {"enum": ["placed", "on the way", "delivered"], "default": "placed"},
                "trackingNumber": {"type": "string"},
            },
            "required": ["id"],
            "additionalProperties": False,
        },
    },
    "required": ["user", "conversation"],
    "additionalProperties": False,
}


class User(BaseModel):
    name: str
    language: str


class Conversation(BaseModel):
    topic: str
    turns: int


class Order(BaseModel):
    id: str
    status: Literal["placed", "on the way", "delivered"]
    trackingNumber: str | None = None


class SupportMemory(BaseModel):
    """The schema as a Python agent reads it (Go has a struct, TypeScript a Zod schema)."""

    user: User
    conversation: Conversation
    order: Order | None = None


TTL = 3600
PATHS = ["order.status", "order.trackingNumber"]
# Writes the schema refuses: (what, the failing JSON pointer, the failing keyword).
BAD_PATCHES: list[tuple[dict[str, Any], str, str]] = [
    ({"order": {"status": "lost"}}, "/order/status", "enum"),
    ({"conversation": {"turns": "many"}}, "/conversation/turns", "type"),
    ({"conversation": {"turns": -1}}, "/conversation/turns", "minimum"),
    ({"order": {"carrier": "UPS"}}, "/order/carrier", "additionalProperties"),
    ({"user": None}, "/user", "required"),
]
BAD_SET = ("stray", "x", "/stray", "additionalProperties")  # a key the schema does not have


# --- each language behind one interface -----------------------------------------------------

Outcome = dict[str, Any]


def outcome(write: Callable[[], dict[str, int]]) -> Outcome:
    """A write's result as the tools print it: what it returned, or the refusal."""
    try:
        return write()
    except MemoryApiError as err:
        if err.code is None:
            raise
        return {"error": {"status": err.status.name, "reason": err.code, "metadata": err.metadata}}


def python_document(client: MemoryClient, memory: Session, paths: list[str]) -> dict[str, Any]:
    document = memory.document()
    typed = memory.document(model=SupportMemory)
    typed_revision = memory.revision
    return {
        "document": dict(document),
        "revision": document.revision,
        "schema": document.schema,
        "defaulted": document.defaulted,
        "paths": {path: memory.get(path, "") for path in paths},
        "projected": dict(memory.document(paths=paths)),
        "schema_json": client.get_schema(document.schema or ""),
        "typed": typed.model_dump(mode="json", exclude_none=True),
        "typed_revision": typed_revision,
    }


def python_watch(stream: ChangeStream, count: int) -> list[dict[str, Any]]:
    """The first ``count`` changes of ``stream``, fewer if it is closed first."""
    changes: list[dict[str, Any]] = []
    with stream:
        for change in stream:
            changes.append(
                {
                    "key": change.key,
                    "operation": change.operation,
                    "kind": change.kind,
                    "version": change.version,
                    "revision": change.revision,
                }
            )
            if len(changes) == count:
                break
    return changes


def python_side(client: MemoryClient, mode: str, session: str, args: list[str]) -> Any:
    """What the TypeScript and Go tools do, in Python (see their usage lines)."""
    memory = client.session(session)
    if mode == "write":
        lang = args[0]
        memory.set(f"{lang}_text", text(lang), ttl=600)
        memory.set_json(f"{lang}_json", doc(lang), ttl=600)
        memory.set_file(f"{lang}_file", file(lang), ttl=600, mime="application/pdf")
        return None
    if mode == "read":
        out: dict[str, Any] = {}
        for lang in args:
            out[f"{lang}_text"] = memory.get(f"{lang}_text")
            out[f"{lang}_json"] = memory.get_json(f"{lang}_json")
            handle = memory.get_file(f"{lang}_file")
            assert handle is not None
            out[f"{lang}_file"] = {
                "mime": handle.info.mime_type,
                "sha256": hashlib.sha256(handle.to_raw()).hexdigest(),
            }
        return out
    if mode == "update-memory":
        ttl, *patches = args

        def update(patch: str) -> dict[str, int]:
            return {"revision": client.update_memory(session, json.loads(patch), ttl=int(ttl))}

        return [outcome(functools.partial(update, patch)) for patch in patches]
    if mode == "set":
        key, value = args
        return [outcome(lambda: {"version": memory.set(key, json.loads(value), ttl=600).version})]
    if mode == "document":
        return python_document(client, memory, args)
    raise ValueError(mode)


@dataclass
class Langs:
    """Runs a mode of the cross-language tools in any of the three languages."""

    client: MemoryClient
    address: str
    api_key: str
    go_tool: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)
    streams: list[ChangeStream] = field(default_factory=list)

    def command(self, lang: str, mode: str, session: str, args: list[str]) -> list[str]:
        if lang == "typescript":
            if not TS_TOOL.exists():
                pytest.fail(f"{TS_TOOL} is missing: build the TypeScript client (make test does)")
            tool = ["node", str(TS_TOOL)]
        else:
            tool = [str(self.go_tool)]
        return [*tool, mode, self.address, self.api_key, session, *args]

    def run(self, lang: str, mode: str, session: str, *args: str) -> Any:
        """Run a mode to its end and return what it printed (parsed)."""
        if lang == "python":
            return python_side(self.client, mode, session, list(args))
        done = subprocess.run(
            self.command(lang, mode, session, list(args)),
            cwd=ROOT, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{lang} {mode} failed: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    def watch(self, lang: str, session: str, after: int, count: int, seconds: float) -> Future[Any]:
        """Watch in the background: the first ``count`` changes after revision ``after``,
        or those that came within ``seconds``."""
        future: Future[Any] = Future()
        if lang == "python":
            stream = self.client.session(session).watch(after_revision=after)
            self.streams.append(stream)
            timer = threading.Timer(seconds, stream.close)  # bounded, like the tools' watch
            timer.daemon = True
            timer.start()

            def collect() -> None:
                try:
                    future.set_result(python_watch(stream, count))
                except BaseException as err:  # handed to whoever waits for the result
                    future.set_exception(err)
                finally:
                    timer.cancel()

            threading.Thread(target=collect, daemon=True).start()
            return future
        args = [str(after), str(count), str(seconds)]
        proc = subprocess.Popen(
            self.command(lang, "watch", session, args),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.started.append(proc)

        def wait() -> None:
            try:
                out, err = proc.communicate(timeout=TOOL_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            if proc.returncode == 0:
                future.set_result(json.loads(out))
            else:
                future.set_exception(AssertionError(f"{lang} watch failed: {err}"))

        threading.Thread(target=wait, daemon=True).start()
        return future

    def stop(self) -> None:
        """End the watches still running: this runner's streams and tool processes only."""
        for stream in self.streams:
            stream.close()
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture(scope="module")
def go_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go tool, built once instead of `go run` on every call."""
    binary = tmp_path_factory.mktemp("xlang") / "xlang"
    done = subprocess.run(
        ["go", "build", "-o", str(binary), "./cmd/xlang"],
        cwd=GO_DIR, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"go build ./cmd/xlang failed: {done.stderr}"
    return binary


@pytest.fixture
def langs(server: ServerThread, api_key: str, go_tool: Path) -> Iterator[Langs]:
    with MemoryClient(server.address, api_key=api_key, timeout=5) as client:
        runner = Langs(client, server.address, api_key, go_tool)
        yield runner
        runner.stop()


# --- tests ---------------------------------------------------------------------------------


def test_each_language_reads_what_every_language_wrote(langs: Langs) -> None:
    session = f"xlang-{uuid.uuid4().hex}"
    for writer in LANGS:
        langs.run(writer, "write", session, writer)
    expected: dict[str, Any] = {}
    for lang in LANGS:
        expected[f"{lang}_text"] = text(lang)
        expected[f"{lang}_json"] = doc(lang)
        expected[f"{lang}_file"] = {
            "mime": "application/pdf",
            "sha256": hashlib.sha256(file(lang)).hexdigest(),
        }
    for reader in LANGS:
        got = langs.run(reader, "read", session, *LANGS)
        assert got == expected, f"{reader} read something else"


def violation(pointer: str, keyword: str, schema: str) -> Outcome:
    """A SCHEMA_VIOLATION refusal as the tools print it (``field`` is the BadRequest's)."""
    metadata = {"pointer": pointer, "field": pointer, "keyword": keyword, "schema": schema}
    return {
        "error": {"status": "INVALID_ARGUMENT", "reason": "SCHEMA_VIOLATION", "metadata": metadata}
    }


def test_structured_memory_across_languages(langs: Langs) -> None:
    session = f"xlang-doc-{uuid.uuid4().hex}"
    name = f"support-agent-{uuid.uuid4().hex[:8]}"  # schemas are tenant-wide; the tenant is shared
    langs.client.put_schema(name, SCHEMA)
    memory = langs.client.session(session)
    try:
        # Python: the trigger initializes the memory and binds the session to the schema.
        initial = {"user": {"name": "Ada"}, "conversation": {"topic": "refund"}}
        start = memory.update({**initial, "order": {"id": "ORD-123"}}, ttl=TTL, schema=name)
        initialized = memory.document()
        assert initialized["order"] == {"id": "ORD-123", "status": "placed"}, "the default"
        assert "order.status" in initialized.defaulted and initialized.revision == start
        # A bounded watch in every language from there on: three changes follow.
        watches = {lang: langs.watch(lang, session, start, 3, 60) for lang in LANGS}

        # TypeScript, from outside the agent: the order is on its way.
        status = json.dumps({"order": {"status": "on the way"}})
        [ts] = langs.run("typescript", "update-memory", session, str(TTL), status)
        assert ts["revision"] > start

        # Writes against the schema from each language: refused alike, nothing changes.
        bad = [json.dumps(patch) for patch, _, _ in BAD_PATCHES]
        refusals = [violation(pointer, keyword, name) for _, pointer, keyword in BAD_PATCHES]
        key, value, pointer, keyword = BAD_SET
        for lang in LANGS:
            assert langs.run(lang, "update-memory", session, str(TTL), *bad) == refusals, lang
            refused = langs.run(lang, "set", session, key, json.dumps(value))
            assert refused == [violation(pointer, keyword, name)], lang
        assert memory.document().revision == ts["revision"], "a refused write made a revision"

        # Go, from outside the agent: the carrier's tracking number.
        tracking = json.dumps({"order": {"trackingNumber": "1Z999"}})
        [go] = langs.run("go", "update-memory", session, str(TTL), tracking)
        # Python, the agent's own tool: one more turn.
        py = memory.update({"conversation": {"turns": 1}}, ttl=TTL)
        assert start < ts["revision"] < go["revision"] < py

        # Every language reads the same merged document, revision, paths and schema.
        merged = {
            "user": {"name": "Ada", "language": "en"},
            "conversation": {"topic": "refund", "turns": 1},
            "order": {"id": "ORD-123", "status": "on the way", "trackingNumber": "1Z999"},
        }
        expected = {
            "document": merged,
            "revision": py,
            "schema": name,
            "defaulted": ["user.language"],
            "paths": {"order.status": "on the way", "order.trackingNumber": "1Z999"},
            "projected": {"order": {"status": "on the way", "trackingNumber": "1Z999"}},
            "schema_json": SCHEMA,
            "typed": merged,  # Go's DocumentAs, TypeScript's Zod model, Python's pydantic model
            "typed_revision": py,
        }
        for lang in LANGS:
            assert langs.run(lang, "document", session, *PATHS) == expected, lang

        # Every watch saw the three changes, in revision order, whichever language made them.
        order, conversation = memory.get_entry("order"), memory.get_entry("conversation")
        assert order is not None and conversation is not None
        changes = [
            {"key": "order", "operation": "set", "kind": "json", "revision": ts["revision"]},
            {"key": "order", "operation": "set", "kind": "json", "revision": go["revision"]},
            {"key": "conversation", "operation": "set", "kind": "json", "revision": py},
        ]
        seen = {lang: watch.result(TOOL_TIMEOUT) for lang, watch in watches.items()}
        for lang, got in seen.items():
            assert [{k: v for k, v in c.items() if k != "version"} for c in got] == changes, lang
            assert got[0]["version"] < got[1]["version"] == order.version, lang
            assert got[2]["version"] == conversation.version, lang
            assert got == seen["python"], lang

        # The conversation ends: an outside update from any language cannot revive it.
        memory.clear()
        late = json.dumps({"order": {"status": "delivered"}})
        gone = {lang: langs.run(lang, "update-memory", session, str(TTL), late) for lang in LANGS}
        for lang, [refused] in gone.items():
            assert (refused["error"]["status"], refused["error"]["reason"]) == (
                "NOT_FOUND",
                "SESSION_NOT_FOUND",
            ), lang
            assert refused == gone["python"][0], lang
        assert memory.document(defaults=False) == {}
    finally:
        langs.client.delete_schema(name)
