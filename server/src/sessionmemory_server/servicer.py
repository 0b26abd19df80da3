"""gRPC servicer: proto <-> domain only. Rules live in `memory` and `core`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from sessionmemory.v1 import memory_pb2 as pb
from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc

from . import core
from .access import METHODS, Bucket, Permission, Principal, batch_cost
from .auth import Authenticator
from .core import Kind
from .errors import DomainError, invalid, unauthenticated
from .files import FileHeaderSpec, Files
from .interceptors import (
    claim_tenant,
    invocation_metadata,
    report_bytes_in,
    report_bytes_out,
    report_caller,
)
from .limits import LimitBook
from .memory import Memory, WriteSpec
from .quotas import Quotas
from .ratelimit import FILE_BYTES_MAX_WAIT_SECONDS, RateLimiter
from .schema_registry import SchemaRegistry
from .tokens import SessionTokens
from .values import Change, FileMeta, Record, SchemaRecord, Written, file_meta
from .watch import ChangeHub

Context = grpc.aio.ServicerContext[Any, Any]

_PB_KIND: Final = {
    Kind.STRING: pb.VALUE_KIND_STRING,
    Kind.NUMBER: pb.VALUE_KIND_NUMBER,
    Kind.BOOLEAN: pb.VALUE_KIND_BOOLEAN,
    Kind.JSON: pb.VALUE_KIND_JSON,
    Kind.FILE: pb.VALUE_KIND_FILE,
}
_SET_ONEOF: Final = {
    "string_value": Kind.STRING,
    "number_value": Kind.NUMBER,
    "bool_value": Kind.BOOLEAN,
    "json_value": Kind.JSON,
}


def _ts(ms: int) -> Timestamp:
    return Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def file_info(meta: FileMeta) -> pb.FileInfo:
    """The proto FileInfo of a stored file."""
    return pb.FileInfo(
        key=meta.key,
        mime_type=meta.mime_type,
        size_bytes=meta.size_bytes,
        sha256=meta.sha256,
        created_at=_ts(meta.created_ms),
        expires_at=_ts(meta.expires_ms),
        version=meta.version,
    )


def _value(record: Record) -> pb.Value:
    kind = record.kind
    if kind is Kind.STRING:
        return pb.Value(string_value=record.payload)
    if kind is Kind.NUMBER:
        return pb.Value(number_value=float(record.payload))
    if kind is Kind.BOOLEAN:
        return pb.Value(bool_value=record.payload == "1")
    if kind is Kind.FILE:
        return pb.Value(file_value=file_info(file_meta(record)))
    return pb.Value(json_value=record.payload)


def _entry(record: Record) -> pb.Entry:
    return pb.Entry(
        key=record.key,
        value=_value(record),
        expires_at=_ts(record.expires_ms),
        version=record.version,
    )


def _result(key: str, written: Written) -> pb.WriteResult:
    return pb.WriteResult(key=key, version=written.version, expires_at=_ts(written.expires_ms))


_PB_OPERATION: Final = {
    "set": pb.CHANGE_OPERATION_SET,
    "delete": pb.CHANGE_OPERATION_DELETE,
    "expire": pb.CHANGE_OPERATION_EXPIRE,
}


def _change(change: Change) -> pb.Change:
    out = pb.Change(
        key=change.key,
        operation=_PB_OPERATION[change.operation],
        kind=_PB_KIND[change.kind] if change.kind is not None else pb.VALUE_KIND_UNSPECIFIED,
        version=change.version,
        revision=change.revision,
    )
    if change.expires_ms:
        out.expires_at.CopyFrom(_ts(change.expires_ms))
    return out


def _schema_info(record: SchemaRecord) -> svc.SchemaInfo:
    return svc.SchemaInfo(
        name=record.name,
        version=record.version,
        size_bytes=record.size_bytes,
        updated_at=_ts(record.updated_ms),
    )


def _limits() -> pb.Limits:
    # core.Limits names its fields after the proto's, so the message is filled by name.
    return pb.Limits(**{f.name: getattr(core.LIMITS, f.name) for f in pb.Limits.DESCRIPTOR.fields})


# ReadFileResponse.chunk is field 2, length-delimited: tag (2 << 3) | 2.
_CHUNK_TAG: Final = bytes([(2 << 3) | 2])


def chunk_message(chunk: bytes) -> bytes:
    """The wire bytes of ``ReadFileResponse(chunk=chunk)``, built with one copy of ``chunk``.

    Building the message and serializing it copies a 256 KiB chunk twice on the
    event loop; ReadFile's stream serializer (see `interceptors`) sends bytes as
    they are. tests/unit/test_servicer.py checks it equals protobuf's encoding.
    """
    size = len(chunk)
    head = bytearray(_CHUNK_TAG)
    while size > 0x7F:
        head.append((size & 0x7F) | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + chunk


class MemoryServicer(svc_grpc.MemoryServiceServicer):
    """Implements sessionmemory.v1.MemoryService."""

    def __init__(
        self,
        memory: Memory,
        files: Files,
        schemas: SchemaRegistry,
        hub: ChangeHub,
        *,
        auth: Authenticator,
        tokens: SessionTokens,
        limiter: RateLimiter,
        limit_book: LimitBook,
        quotas: Quotas,
        upload_idle_seconds: float,
    ) -> None:
        self._auth = auth
        self._tokens = tokens
        self._limiter = limiter
        self._limit_book = limit_book
        self._quotas = quotas
        self._memory = memory
        self._schemas = schemas
        self._hub = hub
        self._files = files
        self._idle = upload_idle_seconds
        self._limits = _limits()

    async def _principal(self, context: Context) -> Principal:
        authorization = None
        for name, value in invocation_metadata(context):
            if name == "authorization":
                authorization = str(value)
                break
        return await self._auth.authenticate(authorization, context.peer())

    async def _admit(
        self, context: Context, method: str, session_id: str | None, cost: int = 1
    ) -> str:
        """Authenticate the call, check a token's grant, count it against its limits.

        Returns the tenant. Raises UNAUTHENTICATED, PERMISSION_DENIED,
        RATE_LIMITED or SERVER_BUSY (the tenant holds its share of this
        process's calls); nothing is read or written then.
        """
        principal = await self._principal(context)
        report_caller(principal.tenant, session_id)
        access = METHODS[method]
        principal.check(method, access, session_id)
        claim_tenant(principal.tenant)  # before the rate: a busy refusal spends no token
        await self._limiter.acquire(principal.tenant, access.bucket, cost)
        return principal.tenant

    async def Get(self, request: svc.GetRequest, context: Context) -> svc.GetResponse:
        """See the proto."""
        tenant = await self._admit(context, "Get", request.session_id)
        record = await self._memory.get(tenant, request.session_id, request.key)
        if record is None:
            return svc.GetResponse(found=False)
        return svc.GetResponse(found=True, entry=_entry(record))

    async def GetMany(self, request: svc.GetManyRequest, context: Context) -> svc.GetManyResponse:
        """See the proto."""
        tenant = await self._admit(
            context, "GetMany", request.session_id, batch_cost(len(request.keys))
        )
        records = await self._memory.get_many(tenant, request.session_id, request.keys)
        return svc.GetManyResponse(entries=[_entry(r) for r in records])

    async def Set(self, request: svc.SetRequest, context: Context) -> svc.SetResponse:
        """See the proto."""
        tenant = await self._admit(context, "Set", request.session_id)
        which = request.WhichOneof("value")
        spec = WriteSpec(
            key=request.key,
            kind=_SET_ONEOF.get(which or ""),
            value=getattr(request, which) if which else None,
            ttl_seconds=request.ttl_seconds if request.HasField("ttl_seconds") else None,
            if_version=request.if_version if request.HasField("if_version") else None,
            value_field=which or "value",
        )
        [written] = await self._memory.write(tenant, request.session_id, [spec], "")
        return svc.SetResponse(result=_result(request.key, written))

    async def SetJson(self, request: svc.SetJsonRequest, context: Context) -> svc.SetJsonResponse:
        """See the proto."""
        tenant = await self._admit(context, "SetJson", request.session_id)
        spec = WriteSpec(
            key=request.key,
            kind=Kind.JSON,
            value=request.json,
            ttl_seconds=request.ttl_seconds if request.HasField("ttl_seconds") else None,
            if_version=request.if_version if request.HasField("if_version") else None,
            value_field="json",
        )
        [written] = await self._memory.write(tenant, request.session_id, [spec], "")
        return svc.SetJsonResponse(result=_result(request.key, written))

    async def SetMany(self, request: svc.SetManyRequest, context: Context) -> svc.SetManyResponse:
        """See the proto."""
        tenant = await self._admit(
            context, "SetMany", request.session_id, batch_cost(len(request.entries))
        )
        specs = []
        for entry in request.entries:
            which = entry.value.WhichOneof("kind")
            specs.append(
                WriteSpec(
                    key=entry.key,
                    kind=_SET_ONEOF.get(which or ""),
                    value=getattr(entry.value, which) if which else None,
                    ttl_seconds=entry.ttl_seconds if entry.HasField("ttl_seconds") else None,
                    if_version=entry.if_version if entry.HasField("if_version") else None,
                )
            )
        written = await self._memory.write(tenant, request.session_id, specs, "entries")
        return svc.SetManyResponse(
            results=[_result(s.key, w) for s, w in zip(specs, written, strict=True)]
        )

    async def Delete(self, request: svc.DeleteRequest, context: Context) -> svc.DeleteResponse:
        """See the proto."""
        tenant = await self._admit(
            context, "Delete", request.session_id, batch_cost(len(request.keys))
        )
        count = await self._memory.delete(tenant, request.session_id, request.keys)
        return svc.DeleteResponse(deleted_count=count)

    async def Increment(
        self, request: svc.IncrementRequest, context: Context
    ) -> svc.IncrementResponse:
        """See the proto."""
        tenant = await self._admit(context, "Increment", request.session_id)
        result = await self._memory.increment(
            tenant,
            request.session_id,
            request.key,
            request.delta,
            request.ttl_seconds if request.HasField("ttl_seconds") else None,
            request.request_id,
        )
        return svc.IncrementResponse(
            value=float(result.text), version=result.version, expires_at=_ts(result.expires_ms)
        )

    async def Touch(self, request: svc.TouchRequest, context: Context) -> svc.TouchResponse:
        """See the proto."""
        tenant = await self._admit(
            context, "Touch", request.session_id, batch_cost(len(request.keys))
        )
        count = await self._memory.touch(
            tenant,
            request.session_id,
            request.keys,
            request.ttl_seconds if request.HasField("ttl_seconds") else None,
        )
        return svc.TouchResponse(touched_count=count)

    async def List(self, request: svc.ListRequest, context: Context) -> svc.ListResponse:
        """See the proto."""
        tenant = await self._admit(context, "List", request.session_id)
        infos = await self._memory.list(tenant, request.session_id)
        return svc.ListResponse(
            entries=[
                pb.EntryInfo(
                    key=i.key,
                    kind=_PB_KIND[i.kind],
                    size_bytes=i.size_bytes,
                    expires_at=_ts(i.expires_ms),
                    version=i.version,
                )
                for i in infos
            ]
        )

    async def Clear(self, request: svc.ClearRequest, context: Context) -> svc.ClearResponse:
        """See the proto."""
        tenant = await self._admit(context, "Clear", request.session_id)
        return svc.ClearResponse(deleted_count=await self._memory.clear(tenant, request.session_id))

    async def GetLimits(
        self, request: svc.GetLimitsRequest, context: Context
    ) -> svc.GetLimitsResponse:
        """See the proto."""
        tenant = await self._admit(context, "GetLimits", None)
        limits = await self._limit_book.get(tenant)
        usage = await self._quotas.usage(tenant)
        return svc.GetLimitsResponse(
            limits=self._limits,
            tenant_limits=svc.TenantLimits(**dataclasses.asdict(limits)),
            tenant_usage=svc.TenantUsage(
                sessions=usage.sessions, stored_bytes=usage.stored_bytes, uploads=usage.uploads
            ),
        )

    async def _next(self, stream: AsyncIterator[svc.SetFileRequest]) -> svc.SetFileRequest | None:
        try:
            async with asyncio.timeout(self._idle):
                return await anext(stream)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise DomainError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "UPLOAD_TIMEOUT",
                f"the upload sent nothing for {self._idle:.0f} s and was cancelled;"
                " nothing was stored",
                metadata={"limit": self._idle},
            ) from None

    async def _chunks(
        self, tenant: str, stream: AsyncIterator[svc.SetFileRequest]
    ) -> AsyncIterator[bytes]:
        while (message := await self._next(stream)) is not None:
            part = message.WhichOneof("part")
            if part == "header":
                raise invalid(
                    "INVALID_UPLOAD", "a SetFile stream has exactly one header, first", "header"
                )
            finished = message.finish_write
            chunk = message.chunk if part == "chunk" else b""
            del message  # keep one copy of the chunk alive, not two
            if chunk:
                report_bytes_in(len(chunk))
                await self._limiter.throttle(
                    tenant, Bucket.FILE_BYTES, len(chunk), FILE_BYTES_MAX_WAIT_SECONDS
                )
                yield chunk
            if finished:
                return
        raise invalid(
            "INVALID_UPLOAD",
            "the SetFile stream ended without finish_write on its last message; nothing was stored",
            "finish_write",
        )

    async def SetFile(
        self, request_iterator: AsyncIterator[svc.SetFileRequest], context: Context
    ) -> svc.SetFileResponse:
        """See the proto."""
        principal = await self._principal(context)
        access = METHODS["SetFile"]
        tenant = principal.tenant
        report_caller(tenant, None)
        principal.check("SetFile", access, None)
        claim_tenant(tenant)
        await self._limiter.acquire(tenant, access.bucket)
        stream = aiter(request_iterator)
        first = await self._next(stream)
        if first is None or first.WhichOneof("part") != "header":
            raise invalid(
                "INVALID_UPLOAD",
                "a SetFile stream starts with a header message"
                + (" (it was empty)" if first is None else ", not a chunk"),
                "header",
            )
        h = first.header
        report_caller(tenant, h.session_id)
        principal.check("SetFile", access, h.session_id)
        header = FileHeaderSpec(
            session_id=h.session_id,
            key=h.key,
            mime_type=h.mime_type,
            ttl_seconds=h.ttl_seconds if h.HasField("ttl_seconds") else None,
            size_bytes=h.size_bytes if h.HasField("size_bytes") else None,
            sha256=h.sha256,
            upload_id=h.upload_id,
            if_version=h.if_version if h.HasField("if_version") else None,
        )
        meta = await self._files.upload(
            tenant, header, self._chunks(tenant, stream), context.cancelled
        )
        return svc.SetFileResponse(file=file_info(meta))

    async def GetFile(self, request: svc.GetFileRequest, context: Context) -> svc.GetFileResponse:
        """See the proto."""
        tenant = await self._admit(context, "GetFile", request.session_id)
        url_ttl = request.url_ttl_seconds if request.HasField("url_ttl_seconds") else None
        found = await self._files.get_file(tenant, request.session_id, request.key, url_ttl)
        if found is None:
            return svc.GetFileResponse(found=False)
        meta, url, url_expires_ms = found
        return svc.GetFileResponse(
            found=True, file=file_info(meta), url=url, url_expires_at=_ts(url_expires_ms)
        )

    # The stubs' type has no room for pre-encoded messages; `interceptors.add_service`
    # registers ReadFile with a serializer that sends bytes as they are.
    async def ReadFile(  # type: ignore[override]
        self, request: svc.ReadFileRequest, context: Context
    ) -> AsyncIterator[svc.ReadFileResponse | bytes]:
        """See the proto (chunks go out pre-encoded, see `chunk_message`)."""
        tenant = await self._admit(context, "ReadFile", request.session_id)
        meta, chunks = await self._files.read(
            tenant,
            request.session_id,
            request.key,
            request.offset,
            request.limit if request.HasField("limit") else None,
        )
        yield svc.ReadFileResponse(file=file_info(meta))
        async for chunk in chunks:
            await self._limiter.throttle(
                tenant, Bucket.FILE_BYTES, len(chunk), FILE_BYTES_MAX_WAIT_SECONDS
            )
            report_bytes_out(len(chunk))
            yield chunk_message(chunk)

    async def GetDocument(
        self, request: svc.GetDocumentRequest, context: Context
    ) -> svc.GetDocumentResponse:
        """See the proto."""
        tenant = await self._admit(context, "GetDocument", request.session_id)
        view = await self._memory.document(
            tenant, request.session_id, request.paths, request.omit_defaults
        )
        return svc.GetDocumentResponse(
            json=view.json,
            revision=view.revision,
            schema=view.schema,
            defaults_applied=bool(view.defaulted),
            defaulted_paths=view.defaulted,
        )

    async def PatchDocument(
        self, request: svc.PatchDocumentRequest, context: Context
    ) -> svc.PatchDocumentResponse:
        """See the proto."""
        tenant = await self._admit(context, "PatchDocument", request.session_id)
        done = await self._memory.patch(
            tenant,
            request.session_id,
            request.merge_patch,
            request.ttl_seconds if request.HasField("ttl_seconds") else None,
            request.schema,
            request.if_revision if request.HasField("if_revision") else None,
            request.must_exist,
        )
        return svc.PatchDocumentResponse(
            revision=done.revision,
            written=[_result(key, w) for key, w in done.written],
            deleted=done.deleted,
            schema=done.schema,
        )

    async def PutSchema(
        self, request: svc.PutSchemaRequest, context: Context
    ) -> svc.PutSchemaResponse:
        """See the proto."""
        tenant = await self._admit(context, "PutSchema", None)
        record = await self._schemas.put(tenant, request.name, request.json_schema)
        return svc.PutSchemaResponse(schema=_schema_info(record))

    async def GetSchema(
        self, request: svc.GetSchemaRequest, context: Context
    ) -> svc.GetSchemaResponse:
        """See the proto."""
        tenant = await self._admit(context, "GetSchema", None)
        record = await self._schemas.get(tenant, request.name)
        return svc.GetSchemaResponse(schema=_schema_info(record), json_schema=record.text)

    async def ListSchemas(
        self, request: svc.ListSchemasRequest, context: Context
    ) -> svc.ListSchemasResponse:
        """See the proto."""
        tenant = await self._admit(context, "ListSchemas", None)
        records = await self._schemas.list(tenant)
        return svc.ListSchemasResponse(schemas=[_schema_info(r) for r in records])

    async def DeleteSchema(
        self, request: svc.DeleteSchemaRequest, context: Context
    ) -> svc.DeleteSchemaResponse:
        """See the proto."""
        tenant = await self._admit(context, "DeleteSchema", None)
        return svc.DeleteSchemaResponse(deleted=await self._schemas.delete(tenant, request.name))

    async def BindSchema(
        self, request: svc.BindSchemaRequest, context: Context
    ) -> svc.BindSchemaResponse:
        """See the proto."""
        tenant = await self._admit(context, "BindSchema", request.session_id)
        revision = await self._memory.bind(tenant, request.session_id, request.schema)
        return svc.BindSchemaResponse(revision=revision)

    async def Watch(
        self, request: svc.WatchRequest, context: Context
    ) -> AsyncIterator[svc.WatchResponse]:
        """See the proto."""
        tenant = await self._admit(context, "Watch", request.session_id)
        session = core.session_id(request.session_id)
        after = request.after_revision if request.HasField("after_revision") else None
        if after is not None and after < 0:
            raise invalid(
                "INVALID_PRECONDITION",
                f"after_revision must be a revision (0 or more); got {after}",
                "after_revision",
            )

        async def still_allowed() -> None:
            # Raises once the key or token stopped working (revoked, expired). A
            # re-check is no login attempt: its failures are not counted.
            authorization = next(
                (str(v) for k, v in context.invocation_metadata() or () if k == "authorization"),
                None,
            )
            principal = await self._auth.authenticate(
                authorization, context.peer(), count_failures=False
            )
            if principal.tenant != tenant:
                raise unauthenticated("API_KEY_INVALID", "the API key is no longer valid")
            principal.check("Watch", METHODS["Watch"], request.session_id)

        async for batch in self._hub.stream(tenant, session, after, still_allowed):
            yield svc.WatchResponse(
                changes=[_change(c) for c in batch.changes],
                revision=batch.revision,
                compacted=batch.compacted,
            )

    async def CreateSessionToken(
        self, request: svc.CreateSessionTokenRequest, context: Context
    ) -> svc.CreateSessionTokenResponse:
        """See the proto."""
        tenant = await self._admit(context, "CreateSessionToken", None)
        issued = await self._tokens.create(
            tenant,
            request.session_id,
            [_permission(p) for p in request.permissions],
            request.ttl_seconds if request.HasField("ttl_seconds") else None,
        )
        return svc.CreateSessionTokenResponse(
            token=issued.token, token_id=issued.token_id, expires_at=_ts(issued.expires_ms)
        )

    async def RevokeSessionToken(
        self, request: svc.RevokeSessionTokenRequest, context: Context
    ) -> svc.RevokeSessionTokenResponse:
        """See the proto."""
        tenant = await self._admit(context, "RevokeSessionToken", None)
        which = request.WhichOneof("target")
        if which == "token_id":
            await self._tokens.revoke_token(tenant, request.token_id)
        elif which == "session_id":
            await self._tokens.revoke_session(tenant, request.session_id)
        else:
            raise invalid(
                "INVALID_TOKEN_REQUEST",
                "RevokeSessionToken needs a token_id or a session_id",
                "target",
            )
        return svc.RevokeSessionTokenResponse()


def _permission(value: int) -> Permission:
    try:
        return Permission(value)
    except ValueError:
        raise invalid(
            "INVALID_TOKEN_REQUEST",
            f"permission {value} is not one of READ (1), WRITE (2), FILES (3)",
            "permissions",
        ) from None
