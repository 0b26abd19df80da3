"""Tiny real samples of every allowed MIME type, generated here (no fixtures on disk)."""

from __future__ import annotations

import io
import struct
import wave
import zlib


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 800)
    return out.getvalue()


def ogg_page() -> bytes:
    header = b"OggS\x00\x02" + b"\x00" * 8 + b"\x01\x00\x00\x00" + b"\x00" * 8 + b"\x01\x1e"
    return header + b"\x01vorbis" + b"\x00" * 23


SAMPLES: dict[str, bytes] = {
    "text/plain": "Grüße, 世界 ✓\n".encode(),
    "application/json": b'{"receipt": {"total": 12.5, "items": ["tea", "cake"]}}',
    "application/xml": b'<?xml version="1.0"?><receipt total="12.5"><item>tea</item></receipt>',
    "text/xml": b"<note><to>Ada</to></note>",
    "image/jpeg": bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9"),
    "image/png": png(),
    "image/gif": bytes.fromhex(
        "4749463839610100010080000000000000ffffff21f90401000000002c00000000010001000002024401003b"
    ),
    "video/mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00\x00\x00\x08free",
    "video/ogg": ogg_page(),
    "audio/ogg": ogg_page(),
    "video/webm": bytes.fromhex("1a45dfa39f4286810142f7810142f2810442f381084282847765626d"),
    "video/x-msvideo": b"RIFF\x24\x00\x00\x00AVI LIST\x18\x00\x00\x00hdrlavih" + b"\x00" * 16,
    "video/mpeg": bytes.fromhex("000001ba440004000401018963f8000001b9"),
    "audio/mpeg": b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes.fromhex("fffb9064") + b"\x00" * 60,
    "audio/wav": wav(),
    "audio/aac": bytes.fromhex("fff15080021ffc") + b"\x00" * 9,
    "audio/flac": b"fLaC\x80\x00\x00\x22" + b"\x00" * 34,
    "application/pdf": b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n",
}

EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"


def pdf_of(size: int) -> bytes:
    """A PDF (by its magic bytes) of exactly ``size`` bytes."""
    head = b"%PDF-1.4\n"
    return head + b"x" * (size - len(head))
