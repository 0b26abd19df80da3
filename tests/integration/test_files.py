"""Files against the real S3 server (SeaweedFS) and real Redis: limits, content checks,
URLs, replacement, release, expiry and collection."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import urllib3
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.asyncio import Redis

from sessionmemory import (
    ConflictError,
    FailedPreconditionError,
    FileInfo,
    InvalidArgumentError,
    MemoryApiError,
    MemoryClient,
    ServiceUnavailableError,
)
from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc
from sessionmemory_server.collector import Collector
from sessionmemory_server.core import Kind
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port
from sessionmemory_server.stores.blob_store import BlobStore
from sessionmemory_server.stores.redis_store import RedisStore
from sessionmemory_server.values import Write

from ..conftest import ServerThread, run_in_thread, start_server, wait_until
from ..samples import EXE, SAMPLES, pdf_of

MIB = 1024 * 1024
LIMIT = 10 * MIB
WEEK = 604_800


@pytest.fixture
def client(server: ServerThread, api_key: str) -> Iterator[MemoryClient]:
    with MemoryClient(server.address, api_key=api_key, timeout=30) as c:
        yield c


@pytest.fixture
def memory(client: MemoryClient) -> Any:
    return client.session(f"files-{uuid.uuid4().hex}")


def objects(server: ServerThread) -> set[str]:
    return set(server.run(server.built.blobs.names("files/")))


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: bytes = response.read()
        return data


def reason_of(call: Any) -> str:
    with pytest.raises(Exception) as info:
        call()
    return str(getattr(info.value, "code", None) or info.value)


@pytest.mark.parametrize("mime", sorted(SAMPLES))
def test_every_mime_type_round_trips(memory: Any, mime: str) -> None:
    data = SAMPLES[mime]
    info = memory.set_file("doc", data, ttl=3600, mime=mime)
    assert isinstance(info, FileInfo)
    assert (info.mime_type, info.size_bytes) == (mime, len(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    entry = memory.get_entry("doc")
    assert entry.kind == "file" and entry.value == info
    handle = memory.get_file("doc")
    assert handle.info == info
    assert handle.to_raw() == data
    assert http_get(handle.to_url()) == data
    [listed] = memory.list()
    assert (listed.kind, listed.size_bytes) == ("file", len(data))


@pytest.mark.parametrize(
    ("mime", "data"),
    [
        ("image/png", EXE),
        ("application/pdf", EXE),
        ("audio/wav", SAMPLES["audio/mpeg"]),
        ("text/plain", b"ok so far \xff\xfe"),
        ("application/json", b'{"a": 1,'),
        ("application/json", b'{"a": 1, "a": 2}'),
        ("application/xml", b"<a><b></a>"),
        ("video/mp4", b"\x00" * 32),
    ],
)
def test_content_must_match_the_mime_type(memory: Any, server: ServerThread, mime: str,
                                          data: bytes) -> None:  # fmt: skip
    before = objects(server)
    with pytest.raises(InvalidArgumentError) as info:
        memory.set_file("doc", data, ttl=60, mime=mime)
    assert info.value.code == "CONTENT_MISMATCH"
    assert memory.get("doc") is None
    assert objects(server) == before


def test_header_is_checked_before_any_byte(memory: Any) -> None:
    def fail(**kw: Any) -> str:
        args = {"ttl": 60, "mime": "application/pdf", **kw}
        with pytest.raises(InvalidArgumentError) as info:
            memory.set_file("doc", SAMPLES["application/pdf"], **args)
        return str(info.value.code)

    assert fail(mime="application/x-msdownload") == "MIME_NOT_ALLOWED"
    assert fail(mime="image/svg+xml") == "MIME_NOT_ALLOWED"
    assert fail(ttl=0) == "TTL_OUT_OF_RANGE"
    assert fail(ttl=WEEK + 1) == "TTL_OUT_OF_RANGE"
    memory.set_file("doc", SAMPLES["application/pdf"], ttl=WEEK, mime="application/pdf")


def test_ten_mib_is_the_limit(memory: Any, server: ServerThread) -> None:
    info = memory.set_file("big", pdf_of(LIMIT), ttl=60, mime="application/pdf")
    assert info.size_bytes == LIMIT
    before = objects(server)
    with pytest.raises(InvalidArgumentError) as err:
        memory.set_file("big", pdf_of(LIMIT + 1), ttl=60, mime="application/pdf")
    assert err.value.code == "FILE_TOO_LARGE"
    # Undeclared size: the server counts and aborts mid-stream.
    chunks = iter([pdf_of(MIB)] + [b"x" * MIB] * 10)
    with pytest.raises(InvalidArgumentError) as err:
        memory.set_file("big", chunks, ttl=60, mime="application/pdf")
    assert err.value.code == "FILE_TOO_LARGE"
    assert memory.get("big").size_bytes == LIMIT
    assert objects(server) == before


def test_sha256_and_declared_size_are_checked(memory: Any, server: ServerThread) -> None:
    stub = svc_grpc.MemoryServiceStub(memory._client._channel)
    data = SAMPLES["application/pdf"]

    def upload(**header: Any) -> Any:
        h = svc.FileHeader(session_id=memory.session_id, key="doc", mime_type="application/pdf",
                           ttl_seconds=60, **header)  # fmt: skip
        msgs = [svc.SetFileRequest(header=h), svc.SetFileRequest(chunk=data, finish_write=True)]
        return stub.SetFile(iter(msgs), metadata=memory._client._metadata, timeout=10)

    for header in (
        {"sha256": hashlib.sha256(b"other").hexdigest()},
        {"size_bytes": len(data) + 1},
        {"size_bytes": len(data) - 1},
    ):
        with pytest.raises(grpc.RpcError) as info:
            upload(**header)
        assert _reason(info.value) == "CHECKSUM_MISMATCH", header
    with pytest.raises(grpc.RpcError) as info:
        upload(sha256="xyz")
    assert _reason(info.value) == "INVALID_UPLOAD"
    ok = upload(sha256=hashlib.sha256(data).hexdigest().upper(), size_bytes=len(data))
    assert ok.file.size_bytes == len(data)


def _reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details[0].Unpack(info)
    return str(info.reason)


def test_stream_shape_errors(memory: Any) -> None:
    stub = svc_grpc.MemoryServiceStub(memory._client._channel)
    header = svc.SetFileRequest(
        header=svc.FileHeader(
            session_id=memory.session_id, key="doc", mime_type="text/plain", ttl_seconds=60
        )
    )
    chunk = svc.SetFileRequest(chunk=b"hello")
    # The last case is a stream that ends without finish_write: abandoned, not stored.
    for stream in ([], [chunk, header], [header, chunk, header], [header, chunk]):
        with pytest.raises(grpc.RpcError) as info:
            stub.SetFile(iter(stream), metadata=memory._client._metadata, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _reason(info.value) == "INVALID_UPLOAD"
    assert memory.get("doc") is None


def test_an_idle_stream_is_cancelled(memory: Any, server: ServerThread) -> None:
    stub = svc_grpc.MemoryServiceStub(memory._client._channel)
    release = threading.Event()

    def stalled() -> Iterator[svc.SetFileRequest]:
        yield svc.SetFileRequest(
            header=svc.FileHeader(
                session_id=memory.session_id, key="doc", mime_type="text/plain", ttl_seconds=60
            )
        )
        yield svc.SetFileRequest(chunk=b"partial ")
        release.wait(20)

    before = objects(server)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.SetFile(stalled(), metadata=memory._client._metadata, timeout=20)
    release.set()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _reason(info.value) == "UPLOAD_TIMEOUT"
    assert time.monotonic() - started < 10  # the test server's idle limit is 2 s
    assert memory.get("doc") is None and objects(server) == before


def test_client_cancel_mid_stream_stores_nothing(memory: Any, server: ServerThread) -> None:
    before = objects(server)
    stub = svc_grpc.MemoryServiceStub(memory._client._channel)

    def requests() -> Iterator[svc.SetFileRequest]:
        yield svc.SetFileRequest(
            header=svc.FileHeader(
                session_id=memory.session_id, key="doc", mime_type="application/pdf", ttl_seconds=60
            )
        )
        yield svc.SetFileRequest(chunk=pdf_of(MIB))
        while True:
            time.sleep(0.05)
            yield svc.SetFileRequest(chunk=b"x" * 1024)

    future = stub.SetFile.future(requests(), metadata=memory._client._metadata, timeout=20)
    time.sleep(0.5)
    future.cancel()
    time.sleep(0.5)
    assert memory.get("doc") is None
    assert objects(server) == before


def uploads_in_progress(server: ServerThread) -> list[str]:
    """Object names of the multipart uploads the store holds under files/ (begun, not ended)."""
    blobs = server.built.blobs

    def listing() -> list[str]:
        result = blobs._client._list_multipart_uploads(blobs.bucket, prefix="files/")
        return [u.object_name for u in result.uploads]

    names: list[str] = server.run(asyncio.to_thread(listing))
    return names


def _large_upload(
    memory: Any,
    data: bytes,
    gate: threading.Event,
    pause_at: int = 6 * MIB,
    chunk: int = MIB,
    **header: Any,
) -> Iterator[svc.SetFileRequest]:
    """A SetFile stream of ``data`` in ``chunk``-sized messages that waits at ``gate``
    before the first one from ``pause_at`` on."""
    yield svc.SetFileRequest(
        header=svc.FileHeader(
            session_id=memory.session_id,
            key="big",
            mime_type="application/pdf",
            ttl_seconds=60,
            **header,
        )
    )
    paused = False
    for start in range(0, len(data), chunk):
        if start >= pause_at and not paused:
            paused = gate.wait(20)
        end = start + chunk
        yield svc.SetFileRequest(chunk=data[start:end], finish_write=end >= len(data))


@pytest.mark.parametrize("chunk", [MIB, 4_000])
def test_a_large_upload_sends_its_first_part_while_the_rest_arrives(
    memory: Any, server: ServerThread, chunk: int
) -> None:
    stub = svc_grpc.MemoryServiceStub(memory._client._channel)
    data = pdf_of(9 * MIB + 123)
    gate = threading.Event()
    call = stub.SetFile.future(
        _large_upload(memory, data, gate, chunk=chunk),
        metadata=memory._client._metadata,
        timeout=30,
    )
    try:
        # The client has sent 6 MiB and waits: the first 5 MiB are in the store
        # as a part, and no object exists yet.
        assert wait_until(lambda: len(uploads_in_progress(server)) == 1, timeout=10)
        [name] = uploads_in_progress(server)
        assert name not in objects(server)
        assert memory.get("big") is None
    finally:
        gate.set()
    stored = call.result()
    assert stored.file.size_bytes == len(data)
    assert stored.file.sha256 == hashlib.sha256(data).hexdigest()
    handle = memory.get_file("big")
    assert handle is not None and handle.to_raw() == data
    assert uploads_in_progress(server) == []


@pytest.fixture
def spooling(redis_server: EmbeddedRedis, s3_server: EmbeddedS3, tmp_path: Path) -> Iterator[Any]:
    """A server of its own spooling under tmp_path, and a session on it."""
    srv = start_server(redis_server.url, s3_server, spool_dir=str(tmp_path))
    try:
        with MemoryClient(srv.address, api_key=srv.create_key("acme"), timeout=30) as c:
            yield srv, c.session(f"files-{uuid.uuid4().hex}")
    finally:
        srv.stop()


def spool_files(spool_dir: Path) -> list[Path]:
    """The upload spool files of every process spooling under ``spool_dir``."""
    return sorted((spool_dir / "session-memory-spool").glob("proc-*/sm-upload-*"))


@pytest.mark.parametrize(
    ("how", "mib"), [("checksum", 8), ("cancel", 8), ("too-short", 8), ("cancel", 3)]
)
def test_a_failed_upload_leaves_no_object_no_parts_and_no_spool_file(
    spooling: Any, tmp_path: Path, how: str, mib: int
) -> None:
    server, memory = spooling
    stub = svc_grpc.MemoryServiceStub(memory._client._channel)
    data = pdf_of(mib * MIB)
    header: dict[str, Any] = {
        "checksum": {"sha256": hashlib.sha256(b"other").hexdigest()},
        "cancel": {},
        "too-short": {"size_bytes": len(data) + 1},
    }[how]
    before = objects(server)
    gate = threading.Event()
    call = stub.SetFile.future(
        _large_upload(memory, data, gate, pause_at=min(6, mib - 1) * MIB, **header),
        metadata=memory._client._metadata,
        timeout=30,
    )
    try:
        if mib > 5:  # the first 5 MiB went up as a part while the client waits
            assert wait_until(lambda: len(uploads_in_progress(server)) == 1, timeout=10)
        else:
            assert wait_until(lambda: len(spool_files(tmp_path)) == 1, timeout=10)
        if how == "cancel":
            call.cancel()
    finally:
        gate.set()
    with pytest.raises((grpc.RpcError, grpc.FutureCancelledError)) as info:
        call.result()
    if how != "cancel":
        assert isinstance(info.value, grpc.RpcError)
        assert _reason(info.value) == "CHECKSUM_MISMATCH"
    # A cancelled call ends at once; the abort and the spool's removal follow.
    assert wait_until(lambda: uploads_in_progress(server) == [], timeout=10)
    assert wait_until(lambda: spool_files(tmp_path) == [], timeout=10)
    assert memory.get("big") is None
    assert objects(server) == before


async def test_a_part_sees_the_bytes_still_in_the_spools_write_buffer(
    server: ServerThread, tmp_path: Path
) -> None:
    blobs = server.built.blobs
    spool = tmp_path / "spool"
    data = pdf_of(6 * MIB)
    name = f"files/acme/{uuid.uuid4().hex}"

    async def scenario() -> None:
        with spool.open("wb", buffering=16 * MIB) as out:  # nothing reaches the file unflushed
            out.write(data)
            upload = blobs.upload(name, spool, "application/pdf")
            await upload.received(len(data), out.flush)
            await upload.finish(len(data))

    server.run(scenario())

    def stored() -> bytes:
        response = blobs._client.get_object(blobs.bucket, name)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    assert server.run(asyncio.to_thread(stored)) == data
    server.run(blobs.delete(name))


def test_an_abort_also_drops_uploads_it_never_learned_of(
    server: ServerThread, tmp_path: Path
) -> None:
    """The store may create an upload for a request that timed out here: abort finds it."""
    blobs = server.built.blobs
    spool = tmp_path / "spool"
    spool.write_bytes(pdf_of(6 * MIB))
    name = f"files/acme/{uuid.uuid4().hex}"

    def create() -> str:
        upload_id: str = blobs._client._create_multipart_upload(blobs.bucket, name, {})
        return upload_id

    def uploads() -> list[str]:
        return blobs._uploads_of(name)

    async def scenario() -> tuple[list[str], list[str]]:
        unknown = await asyncio.to_thread(create)
        upload = blobs.upload(name, spool, "application/pdf")
        await upload.received(6 * MIB)
        for _ in range(100):  # until the first part has started its own upload
            during = await asyncio.to_thread(uploads)
            if len(during) == 2:
                break
            await asyncio.sleep(0.05)
        assert unknown in during
        await upload.aborted()
        return during, await asyncio.to_thread(uploads)

    during, after = server.run(scenario())
    assert len(during) == 2
    assert after == []


def test_a_part_queued_behind_busy_transfers_starts_nothing_after_an_abort(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3, tmp_path: Path
) -> None:
    server = start_server(redis_server.url, s3_server, s3_timeout_seconds=0.2, blob_threads=1)
    try:
        blobs = server.built.blobs
        spool = tmp_path / "spool"
        spool.write_bytes(pdf_of(6 * MIB))
        name = f"files/acme/{uuid.uuid4().hex}"
        busy = threading.Event()

        async def scenario() -> None:
            # The one transfer thread is busy past the abort's wait for parts.
            hold = asyncio.ensure_future(blobs._run(busy.wait, 10))
            await asyncio.sleep(0.05)
            upload = blobs.upload(name, spool, "application/pdf")
            await upload.received(6 * MIB)
            await upload.aborted()
            busy.set()
            await hold

        server.run(scenario())
        # The queued part ran after the abort and started no upload.
        time.sleep(0.5)
        assert server.run(asyncio.to_thread(blobs._uploads_of, name)) == []
    finally:
        server.stop()


def test_a_failed_part_ends_the_upload_at_the_next_chunk(tmp_path: Path) -> None:
    """A store that refuses the first part fails the upload now, not after the last byte."""
    blobs = BlobStore(
        endpoint=f"127.0.0.1:{free_port()}",  # nothing listens: every request is refused
        access_key="key",
        secret_key="secret",
        bucket="nowhere",
        secure=False,
        region="us-east-1",
        timeout=0.5,
        threads=2,
    )
    spool = tmp_path / "spool"
    spool.write_bytes(pdf_of(6 * MIB))

    async def scenario() -> None:
        upload = blobs.upload("files/acme/x", spool, "application/pdf")
        await upload.received(6 * MIB)  # sends the first part
        for _ in range(100):
            await asyncio.sleep(0.05)
            try:
                await upload.received(6 * MIB + 1)  # the next chunk
            except urllib3.exceptions.HTTPError:
                await upload.aborted()
                return
        raise AssertionError("the failed part was not raised")

    try:
        run_in_thread(scenario())
    finally:
        blobs.close()


def test_the_collector_aborts_multipart_uploads_nothing_can_finish(server: ServerThread) -> None:
    """A server killed mid-upload, or an abort the store refused, leaves an upload behind."""
    blobs = server.built.blobs
    name = f"files/acme/{uuid.uuid4().hex}"
    server.run(asyncio.to_thread(blobs._client._create_multipart_upload, blobs.bucket, name, {}))
    assert server.run(blobs.abort_stale_uploads("files/", 3600)) == 0
    assert name in uploads_in_progress(server)
    store = server.built.collector._store
    collector = Collector(store, blobs, interval=0.1, stale_upload_seconds=0.0)

    async def collect() -> None:
        await asyncio.sleep(1.1)  # the listing's times are whole seconds
        task = asyncio.create_task(collector.run())
        try:
            for _ in range(50):
                if not await asyncio.to_thread(blobs._uploads_of, name):
                    return
                await asyncio.sleep(0.1)
        finally:
            task.cancel()

    server.run(collect())
    assert name not in uploads_in_progress(server)


def test_upload_id_makes_retries_store_once(memory: Any, server: ServerThread) -> None:
    data = SAMPLES["image/png"]
    first = memory.set_file("pic", data, ttl=60, mime="image/png", upload_id="u-1")
    count = len(objects(server))
    again = memory.set_file("pic", data, ttl=60, mime="image/png", upload_id="u-1")
    assert again == first
    assert len(objects(server)) == count
    third = memory.set_file("pic", data, ttl=60, mime="image/png", upload_id="u-2")
    assert third.version > first.version


@pytest.mark.parametrize(
    "change",
    [
        {"key": "other"},
        {"mime": "text/plain", "data": b"plain text"},
        {"ttl": 120},
        {"if_version": 1},
    ],
    ids=["key", "mime", "ttl", "if_version"],
)
def test_upload_id_reused_with_another_header_is_refused(
    memory: Any, server: ServerThread, change: dict[str, Any]
) -> None:
    data = SAMPLES["image/png"]
    first = memory.set_file("pic", data, ttl=60, mime="image/png", upload_id="u-9")
    before = objects(server)
    call = {"key": "pic", "data": data, "ttl": 60, "mime": "image/png", **change}
    key, payload = call.pop("key"), call.pop("data")
    with pytest.raises(InvalidArgumentError) as info:
        memory.set_file(key, payload, upload_id="u-9", **call)
    assert info.value.code == "REQUEST_ID_REUSED"
    assert info.value.metadata["field"] == "header.upload_id"
    assert objects(server) == before, "nothing was stored"
    assert memory.get_file("pic").info == first
    assert memory.get("other") is None


def test_preconditions_and_kinds(memory: Any) -> None:
    first = memory.set_file("doc", b"v1", ttl=60, mime="text/plain", only_if_absent=True)
    with pytest.raises(ConflictError):
        memory.set_file("doc", b"v2", ttl=60, mime="text/plain", only_if_absent=True)
    memory.set_file("doc", b"v2", ttl=60, mime="text/plain", if_version=first.version)
    memory.set("name", "Ada")
    with pytest.raises(FailedPreconditionError) as info:
        memory.get_file("name")
    assert info.value.code == "NOT_A_FILE"
    with pytest.raises(FailedPreconditionError):
        memory.increment("doc")
    assert memory.get_file("missing") is None


def test_data_forms(memory: Any, tmp_path: Path) -> None:
    import base64
    import io

    data = SAMPLES["audio/wav"]
    path = tmp_path / "a.wav"
    path.write_bytes(data)
    seen: list[tuple[int, int | None]] = []
    for form in (data, base64.b64encode(data).decode(), str(path), path, io.BytesIO(data),
                 iter([data[:10], data[10:]])):  # fmt: skip
        memory.set_file("wav", form, ttl=60, mime="audio/wav", progress=lambda *a: seen.append(a))
        assert memory.get_file("wav").to_raw() == data
    assert seen[-1][0] == len(data)
    handle = memory.get_file("wav")
    assert handle.to_base64() == base64.b64encode(data).decode()
    saved: list[tuple[int, int | None]] = []
    assert handle.save(tmp_path / "out.wav", progress=lambda *a: saved.append(a)) == len(data)
    assert saved[-1] == (len(data), len(data))
    assert (tmp_path / "out.wav").read_bytes() == data
    assert b"".join(handle.iter_chunks(offset=4, limit=8)) == data[4:12]


def test_url_ttl_rules(memory: Any) -> None:
    memory.set_file("doc", b"hello", ttl=120, mime="text/plain")
    now = time.time()
    default = memory.get_file("doc")
    # min(default 15 min, the file's remaining 120 s)
    assert 110 < (default.url_expires_at.timestamp() - now) <= 121
    short = memory.get_file("doc", url_ttl=5)
    assert (short.url_expires_at.timestamp() - now) <= 6
    with pytest.raises(InvalidArgumentError):
        memory.get_file("doc", url_ttl=0)


def _url_gone(url: str) -> bool:
    try:
        http_get(url)
    except urllib.error.HTTPError as exc:
        return exc.code in (403, 404)
    return False


@pytest.mark.parametrize("how", ["delete", "clear", "replace", "set"])
def test_url_stops_working_within_a_second_of_the_call(memory: Any, how: str) -> None:
    pdf = SAMPLES["application/pdf"]
    memory.set_file("doc", pdf, ttl=600, mime="application/pdf")
    url = memory.get_file("doc").to_url()
    assert http_get(url) == pdf
    if how == "delete":
        assert memory.delete("doc") == 1
    elif how == "clear":
        assert memory.clear() == 1
    elif how == "replace":
        memory.set_file("doc", b"%PDF-1.7\nnew", ttl=600, mime="application/pdf")
    else:
        memory.set("doc", "a string now")
    returned = time.monotonic()
    assert wait_until(lambda: _url_gone(url), timeout=1.0), f"URL still served after {how}"
    assert time.monotonic() - returned < 1.0


def test_touch_that_shortens_a_file_shortens_its_object_and_urls(
    memory: Any, server: ServerThread
) -> None:
    pdf = SAMPLES["application/pdf"]
    before = objects(server)
    memory.set_file("doc", pdf, ttl=600, mime="application/pdf")
    url = memory.get_file("doc").to_url()  # valid for 600 s when handed out
    name = objects(server) - before
    assert len(name) == 1
    assert memory.touch("doc", ttl=1) == 1
    time.sleep(1.1)
    assert memory.get("doc") is None
    # Collected within a collection period (0.5 s here) of the new expiry.
    assert wait_until(lambda: _url_gone(url), timeout=3.0)
    assert wait_until(lambda: not (name & objects(server)), timeout=3.0)


def test_replace_delete_clear_and_set_release_blobs(memory: Any, server: ServerThread) -> None:
    baseline = objects(server)
    memory.set_file("a", b"one", ttl=600, mime="text/plain")
    memory.set_file("a", b"two", ttl=600, mime="text/plain")  # replaces
    memory.set_file("b", b"three", ttl=600, mime="text/plain")
    memory.set_file("c", b"four", ttl=600, mime="text/plain")
    memory.set("b", "a string now")  # a Set over a file releases it
    memory.delete("c")
    assert len(objects(server) - baseline) == 1, "released objects go before the call returns"
    memory.clear()
    assert objects(server) == baseline


def test_expired_files_are_collected(memory: Any, server: ServerThread) -> None:
    baseline = objects(server)
    memory.set_file("short", b"bye", ttl=1, mime="text/plain")
    assert len(objects(server) - baseline) == 1
    time.sleep(1.1)
    assert memory.get("short") is None
    assert wait_until(lambda: objects(server) == baseline)


def test_replacement_while_a_reader_streams(memory: Any, server: ServerThread) -> None:
    old, new = pdf_of(4 * MIB), b"%PDF-1.7\n" + b"n" * (3 * MIB)
    memory.set_file("doc", old, ttl=600, mime="application/pdf")
    handle = memory.get_file("doc")
    chunks = handle.iter_chunks()
    received = [next(chunks)]
    memory.set_file("doc", new, ttl=600, mime="application/pdf")
    # The old object is deleted at once: a read already streaming it either
    # finishes (the store keeps serving an open read) or is told, never short.
    try:
        received.extend(chunks)
    except MemoryApiError as exc:
        assert exc.status == grpc.StatusCode.NOT_FOUND
        assert exc.code == "FILE_NOT_FOUND"
    else:
        assert b"".join(received) == old, "the reader sees the old file, whole"
    assert memory.get_file("doc").to_raw() == new
    with pytest.raises(ConflictError):
        b"".join(handle.iter_chunks())  # a stale handle is told, not given the new bytes


def test_readers_that_stop_early_leave_nothing_running(memory: Any, server: ServerThread) -> None:
    """The server reads a chunk ahead: a reader that stops leaves no read behind."""
    data = pdf_of(4 * MIB)
    memory.set_file("ahead", data, ttl=600, mime="application/pdf")
    for _ in range(12):  # three times the store's transfer threads
        chunks = memory.get_file("ahead").iter_chunks()
        next(chunks)
        chunks.close()
    start = time.monotonic()
    assert memory.get_file("ahead").to_raw() == data
    assert time.monotonic() - start < 10


async def test_async_client_files(server: ServerThread, api_key: str, tmp_path: Path) -> None:
    from sessionmemory import AsyncMemoryClient

    async with AsyncMemoryClient(server.address, api_key=api_key) as client:
        memory = client.session(f"files-{uuid.uuid4().hex}")
        info = await memory.set_file("pic", SAMPLES["image/gif"], ttl=60, mime="image/gif")
        handle = await memory.get_file("pic")
        assert handle is not None and handle.info == info
        assert await handle.to_raw() == SAMPLES["image/gif"]
        assert await asyncio.to_thread(http_get, handle.to_url()) == SAMPLES["image/gif"]
        saved: list[tuple[int, int | None]] = []
        size = len(SAMPLES["image/gif"])
        assert await handle.save(tmp_path / "pic.gif", progress=lambda *a: saved.append(a)) == size
        assert (tmp_path / "pic.gif").read_bytes() == SAMPLES["image/gif"]
        assert saved[-1] == (size, size)


@pytest.fixture
def own_s3_stack(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> Iterator[tuple[EmbeddedS3, ServerThread, str]]:
    s3 = EmbeddedS3(tmp_path / "s3", access_key="own", secret_key=uuid.uuid4().hex).start()
    server = start_server(redis_server.url, s3, s3_timeout_seconds=1.0)
    try:
        yield s3, server, server.create_key("acme")
    finally:
        server.stop()
        s3.stop()


def test_object_store_down_is_unavailable_and_leaves_nothing(
    own_s3_stack: tuple[EmbeddedS3, ServerThread, str],
) -> None:
    s3, server, key = own_s3_stack
    with MemoryClient(server.address, api_key=key, timeout=30, max_attempts=1) as client:
        memory = client.session("s3-down")
        memory.set_file("doc", b"kept", ttl=600, mime="text/plain")

        def chunks() -> Iterator[bytes]:
            yield pdf_of(MIB)
            assert s3.process is not None
            s3.process.kill()  # the store dies mid-upload
            s3.process.wait()
            yield b"x" * MIB

        with pytest.raises(ServiceUnavailableError):
            memory.set_file("doc", chunks(), ttl=600, mime="application/pdf")
        # The old file is still the current one; its metadata is intact.
        entry = memory.get_entry("doc")
        assert entry.value.size_bytes == 4
        s3.start()
        assert memory.get_file("doc").to_raw() == b"kept"
        # Nothing dangling and nothing orphaned once the collector ran.
        assert wait_until(lambda: len(objects(server)) == 1, timeout=15)


def test_cli_put_file_and_get_file(server: ServerThread, api_key: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SESSION_MEMORY_ADDR": server.address, "SESSION_MEMORY_API_KEY": api_key}
    source = tmp_path / "receipt.pdf"
    source.write_bytes(pdf_of(3 * MIB))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sessionmemory_server.cli", *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    put = cli("put-file", "--session", "cli-files", "--key", "receipt", "--ttl", "600",
              str(source))  # fmt: skip
    assert put.returncode == 0, put.stderr
    # stderr is a pipe, not a terminal: no progress bar (tests/integration/test_cli.py
    # checks the bar on a terminal).
    assert put.stderr == "" and "application/pdf" in put.stdout
    out = tmp_path / "copy.pdf"
    got = cli("get-file", "--session", "cli-files", "--key", "receipt", "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == source.read_bytes()
    url = cli("get-file", "--session", "cli-files", "--key", "receipt", "--url").stdout.strip()
    assert http_get(url) == source.read_bytes()
    missing = cli("get-file", "--session", "cli-files", "--key", "nothing")
    assert missing.returncode == 3 and missing.stderr.endswith("(FILE_NOT_FOUND)\n")


def test_a_failure_that_may_follow_the_switch_leaves_the_object_to_the_collector(
    server: ServerThread, tmp_path: Path
) -> None:
    collector, blobs = server.built.collector, server.built.blobs
    spool = tmp_path / "one.txt"
    spool.write_bytes(b"x")

    async def fail_after_put(in_doubt: bool) -> str:
        name = f"files/acme/{uuid.uuid4().hex}"
        with pytest.raises(TimeoutError):
            async with collector.lease(name, "sm:{acme|nobody}:v:k") as lease:
                await blobs.put(name, spool, 1, "text/plain")
                lease.in_doubt = in_doubt
                raise TimeoutError  # e.g. the commit's reply was lost
        return name

    sure = server.run(fail_after_put(False))
    assert not server.run(blobs.exists(sure)), "a failure before the switch removes it at once"
    doubt = server.run(fail_after_put(True))
    assert server.run(blobs.exists(doubt)), "in doubt, the object stays for the collector"
    # Nothing references it, so once the lease lapses the collector removes it.
    assert wait_until(lambda: not server.run(blobs.exists(doubt)), timeout=15)


async def test_a_repeated_commit_never_releases_its_own_object(redis_server: EmbeddedRedis) -> None:
    # A commit retried after its reply was lost (retry_stale) finds its own record:
    # releasing that object would leave the metadata pointing at a deleted one.
    client = Redis.from_url(redis_server.url)
    store = RedisStore(client, bucket="test-bucket")
    sid = f"repeat-{uuid.uuid4().hex}"

    def commit(name: str) -> Write:
        payload = json.dumps({"o": name, "m": "text/plain", "s": 1, "h": "", "c": 0, "u": ""})
        return Write("doc", Kind.FILE, payload, 60)

    try:
        assert (await store.write("acme", sid, [commit("files/acme/a")])).released == []
        assert (await store.write("acme", sid, [commit("files/acme/a")])).released == []
        released = (await store.write("acme", sid, [commit("files/acme/b")])).released
        assert released == [f"files/acme/a\t{RedisStore.value_key('acme', sid, 'doc')}"]
    finally:
        await client.aclose()
