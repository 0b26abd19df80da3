"""Is this content what its MIME type says? Checked incrementally, chunk by chunk.

Magic bytes for images, PDF, audio and video; valid UTF-8 for text/plain; strict
JSON for application/json; well-formed XML for the XML types. A renamed
executable fails all of them. Pure logic: no I/O beyond reading the spooled file
for JSON, which has no incremental parser in the standard library.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from xml.parsers import expat

from . import core

_HEAD: Final = 16


class ContentMismatch(Exception):
    """The bytes are not of the declared MIME type."""


def _riff(kind: bytes) -> Callable[[bytes], bool]:
    return lambda h: h[:4] == b"RIFF" and h[8:12] == kind


def _mp3(h: bytes) -> bool:
    return h[:3] == b"ID3" or (len(h) >= 2 and h[0] == 0xFF and h[1] & 0xE0 == 0xE0)


def _aac(h: bytes) -> bool:
    return h[:4] == b"ADIF" or (len(h) >= 2 and h[0] == 0xFF and h[1] & 0xF6 == 0xF0)


MAGIC: Final[dict[str, Callable[[bytes], bool]]] = {
    "image/jpeg": lambda h: h[:3] == b"\xff\xd8\xff",
    "image/png": lambda h: h[:8] == b"\x89PNG\r\n\x1a\n",
    "image/gif": lambda h: h[:6] in (b"GIF87a", b"GIF89a"),
    "application/pdf": lambda h: h[:5] == b"%PDF-",
    "video/mp4": lambda h: h[4:8] == b"ftyp",
    "video/ogg": lambda h: h[:4] == b"OggS",
    "audio/ogg": lambda h: h[:4] == b"OggS",
    "video/webm": lambda h: h[:4] == b"\x1a\x45\xdf\xa3",
    "video/x-msvideo": _riff(b"AVI "),
    "video/mpeg": lambda h: h[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"),
    "audio/mpeg": _mp3,
    "audio/wav": _riff(b"WAVE"),
    "audio/aac": _aac,
    "audio/flac": lambda h: h[:4] == b"fLaC",
}
_XML: Final = frozenset({"application/xml", "text/xml"})
_TEXT: Final = frozenset({"text/plain", "application/json"})


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate object key")


class ContentCheck:
    """Feed the chunks as they arrive, then `finish` with the spooled file."""

    def __init__(self, mime_type: str) -> None:
        self.mime_type = mime_type
        self._head = b""
        self._utf8 = codecs.getincrementaldecoder("utf-8")() if mime_type in _TEXT else None
        self._xml = expat.ParserCreate() if mime_type in _XML else None

    def feed(self, chunk: bytes) -> None:
        """Check the next chunk.

        Raises:
            ContentMismatch: the content already cannot be of the MIME type.
        """
        if len(self._head) < _HEAD:
            self._head += chunk[: _HEAD - len(self._head)]
        try:
            if self._utf8 is not None:
                self._utf8.decode(chunk)
            if self._xml is not None:
                self._xml.Parse(chunk, False)
        except (UnicodeDecodeError, expat.ExpatError) as exc:
            raise ContentMismatch(self._reason(exc)) from None

    def finish(self, spooled: Path) -> None:
        """Check what needs the whole content (run off the event loop).

        Raises:
            ContentMismatch: the content is not of the MIME type.
        """
        magic = MAGIC.get(self.mime_type)
        if magic is not None and not magic(self._head):
            raise ContentMismatch(f"the first bytes are not those of {self.mime_type}")
        try:
            if self._utf8 is not None:
                self._utf8.decode(b"", final=True)
            if self._xml is not None:
                self._xml.Parse(b"", True)
        except (UnicodeDecodeError, expat.ExpatError) as exc:
            raise ContentMismatch(self._reason(exc)) from None
        if self.mime_type == "application/json":
            try:
                # Hooks drop every parsed value at once, so memory stays near the text size.
                json.loads(
                    spooled.read_text("utf-8"),
                    object_pairs_hook=_no_duplicates,
                    parse_constant=core.no_constant,
                )
            except (ValueError, RecursionError) as exc:
                raise ContentMismatch(f"not valid JSON: {exc}") from None

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, UnicodeDecodeError):
            return "not valid UTF-8 text"
        return f"not well-formed XML: {exc}"
