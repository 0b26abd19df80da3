"""The servicer's hand-built wire encoding of ReadFile chunks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory_server.servicer import chunk_message

# Around each varint length boundary (1, 2, 3 and 4 bytes), and a full 256 KiB chunk.
_EDGES = [0, 1, 127, 128, 129, 16_383, 16_384, 16_385, 256 * 1024, 2**21 - 1, 2**21]


@pytest.mark.parametrize("size", _EDGES)
def test_chunk_message_is_protobufs_encoding(size: int) -> None:
    chunk = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    encoded = chunk_message(chunk)
    assert encoded == svc.ReadFileResponse(chunk=chunk).SerializeToString()
    assert svc.ReadFileResponse.FromString(encoded).chunk == chunk


@given(st.binary(max_size=4096))
def test_chunk_message_round_trips(chunk: bytes) -> None:
    assert chunk_message(chunk) == svc.ReadFileResponse(chunk=chunk).SerializeToString()
