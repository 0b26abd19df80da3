"""The synchronous client: `MemoryClient` and its `Session`."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

import grpc

from . import _convert as c
from ._base import (
    DEFAULT_ADDRESS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_TIMEOUT,
    DEFAULT_UPLOAD_TIMEOUT,
    ChannelOptions,
    auth_metadata,
    call_budget,
    check_available,
    client_repr,
    env_channel,
    env_settings,
    log_retry,
    seconds,
)
from ._convert import (
    Document,
    Entry,
    EntryInfo,
    FileData,
    FileInfo,
    Json,
    Limits,
    Partial,
    Plan,
    Progress,
    Scalar,
    SchemaInfo,
    SessionToken,
    SetItem,
    TokenPermission,
    Value,
    WriteResult,
)
from ._files import FileHandle
from ._watch import ChangeStream
from .errors import from_grpc
from .v1 import memory_service_pb2_grpc

T = TypeVar("T")
M = TypeVar("M")


class MemoryClient:
    """A connection to Session Memory. Thread-safe; create one and share it.

    Args:
        address: ``host:port`` of the server.
        api_key: The tenant's API key, or a session token (``smt_...``) from
            `create_session_token` (sent as ``authorization: Bearer <key>``).
        timeout: Default deadline of every call, in seconds (retries included).
        upload_timeout: Deadline of a file upload or download, in seconds.
        max_attempts: Attempts for calls that are safe to retry on UNAVAILABLE.
        credentials: TLS credentials (``grpc.ssl_channel_credentials(ca, key,
            cert)``; key and cert for mTLS); None for a plaintext channel.
        options: Extra gRPC channel options, e.g.
            ``[("grpc.ssl_target_name_override", name)]`` to check ``name`` in the
            server's certificate.

    Every call method (here and on the sessions) takes a keyword-only ``timeout``:
    the seconds that call may take, retries included (None: ``timeout``, or
    ``upload_timeout`` for files; ``math.inf``: no deadline in practice, capped at
    about three years). Past it the call raises `DeadlineExceededError`,
    or the last retryable error when the next retry would not fit. Retries are
    logged at DEBUG on the ``sessionmemory`` logger.

    Raises:
        ValueError: ``timeout`` or ``upload_timeout`` is zero, negative or NaN.
        TypeError: ``timeout`` or ``upload_timeout`` is not a number.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = (),
    ) -> None:
        # Checked before the channel exists: a refused argument leaves nothing to close.
        self._timeout = seconds("timeout", timeout)
        self._upload_timeout = seconds("upload_timeout", upload_timeout)
        self._channel = (
            grpc.secure_channel(address, credentials, options)
            if credentials is not None
            else grpc.insecure_channel(address, options)
        )
        self._stub = memory_service_pb2_grpc.MemoryServiceStub(self._channel)
        self._address = address
        self._tls = credentials is not None
        self._api_key = api_key
        self._metadata = auth_metadata(api_key)
        self._max_attempts = max(1, max_attempts)

    @classmethod
    def from_env(
        cls,
        *,
        address: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = (),
    ) -> MemoryClient:
        """A client configured by the environment; an argument given wins over its variable.

        ``SESSION_MEMORY_ADDR`` is the address (default ``localhost:50051``),
        ``SESSION_MEMORY_API_KEY`` the API key or session token. TLS:

        - ``SESSION_MEMORY_TLS=true``: TLS, the server verified with grpc's roots;
        - ``SESSION_MEMORY_TLS_CA``: a PEM CA bundle to verify the server with;
        - ``SESSION_MEMORY_CLIENT_CERT`` and ``SESSION_MEMORY_CLIENT_KEY``: a PEM client
          certificate and its key, for a server that requires them (mTLS);
        - ``SESSION_MEMORY_TLS_SERVER_NAME``: the name to check in the server's
          certificate instead of the address's host.

        Each of the last three turns TLS on by itself. A ``credentials=`` argument
        wins over all of them (e.g. ``grpc.ssl_channel_credentials(ca, key, cert)``).

        Args:
            address: ``host:port`` of the server, instead of ``SESSION_MEMORY_ADDR``.
            api_key: The API key or session token, instead of ``SESSION_MEMORY_API_KEY``.
            timeout: Default deadline of every call, in seconds (retries included).
            upload_timeout: Deadline of a file upload or download, in seconds.
            max_attempts: Attempts for calls that are safe to retry on UNAVAILABLE.
            credentials: TLS credentials that win over the SESSION_MEMORY_TLS*
                variables; None takes TLS (or plaintext) from them.
            options: Extra gRPC channel options, after those the environment implies.

        Raises:
            ValueError: the TLS variables do not make a configuration (a file is
                unreadable or not PEM, a certificate comes without its key, or
                SESSION_MEMORY_TLS is not a boolean or is false while another
                TLS variable is set).
        """
        env_address, env_api_key = env_settings()
        channel_credentials, channel_options = env_channel(credentials, options)
        return cls(
            address if address is not None else env_address,
            api_key=api_key if api_key is not None else env_api_key,
            timeout=timeout,
            upload_timeout=upload_timeout,
            max_attempts=max_attempts,
            credentials=channel_credentials,
            options=channel_options,
        )

    def __repr__(self) -> str:
        return client_repr(type(self), self._address, self._tls, self._api_key, self._timeout)

    @property
    def stub(self) -> memory_service_pb2_grpc.MemoryServiceStub:
        """The raw generated stub: an escape hatch for what the client does not wrap."""
        return self._stub

    def session(self, session_id: str | None) -> Session:
        """A handle on one conversation's memory. Does no I/O."""
        return Session(self, session_id)

    def get_limits(self, *, timeout: float | None = None) -> Limits:
        """The limits the server enforces, and the tenant's rate limits, quotas and usage.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(None, c.plan_limits(), timeout)

    def create_session_token(
        self,
        session_id: str,
        permissions: Iterable[TokenPermission] = ("read",),
        *,
        ttl_seconds: int | None = None,
        timeout: float | None = None,
    ) -> SessionToken:
        """Issue a token that authorizes only ``session_id`` and ``permissions``.

        Give ``token`` to a party that must not hold the tenant's API key (a browser
        widget); a client built with ``api_key=token`` then works on that session
        only. Needs the tenant's API key (a token cannot create tokens).

        Args:
            session_id: The one conversation the token may touch.
            permissions: Any of ``"read"`` (Get, GetMany, List, document, Watch),
                ``"write"`` (Set, Increment, Delete, Touch, Clear, update) and
                ``"files"`` (SetFile, GetFile, ReadFile).
            ttl_seconds: Lifetime, 1 to 3,600 seconds; None means 900.
            timeout: Seconds this call may take; None: the client's ``timeout``.

        Returns:
            The token, its id (for `revoke_session_token`) and its expiry.

        Raises:
            ValueError: an unknown permission name; no call was made.
            InvalidArgumentError: no permission, a repeated one, or a TTL out of range
                (``INVALID_TOKEN_REQUEST``, ``TTL_OUT_OF_RANGE``).
            PermissionDeniedError: the client holds a session token, not an API key.
            MemoryApiError: the call failed.
        """
        return self._run(
            session_id, c.plan_create_session_token(session_id, permissions, ttl_seconds), timeout
        )

    def revoke_session_token(
        self,
        *,
        token_id: str | None = None,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Stop one token (``token_id``), or every token issued so far for ``session_id``.

        Every server process refuses the token within about a second
        (`AuthenticationError` with ``TOKEN_REVOKED``). Revoking twice is harmless.

        Raises:
            ValueError: not exactly one of ``token_id`` and ``session_id``.
            InvalidArgumentError: ``token_id`` is not one `create_session_token`
                returns (``INVALID_TOKEN_REQUEST``).
            PermissionDeniedError: the client holds a session token, not an API key.
            MemoryApiError: the call failed.
        """
        self._run(None, c.plan_revoke_session_token(token_id, session_id), timeout)

    def update_memory(
        self,
        session_id: str,
        partial: Partial,
        *,
        ttl: int,
        schema: str | None = None,
        if_revision: int | None = None,
        must_exist: bool = True,
        timeout: float | None = None,
    ) -> int:
        """Merge ``partial`` into a session's document from outside the conversation.

        The same as `Session.update`, except that by default it refuses to revive a
        session that has ended (no live key): a webhook cannot start a conversation.

        Args:
            session_id: The conversation to update.
            partial: A dict or a pydantic model instance (its set fields), applied as
                an RFC 7396 merge patch.
            ttl: Seconds until every top-level key the patch writes expires (1 to 86,400).
            schema: The schema to validate against (binds an unbound session).
            if_revision: Apply only if the session's revision is this one.
            must_exist: Fail when the session has no live key (default True).
            timeout: Seconds this call may take, retries included; None: the
                client's ``timeout``.

        Returns:
            The session's revision after the update.

        Raises:
            NotFoundError: the session has no live key (``SESSION_NOT_FOUND``).
            SchemaViolationError: the result would not validate; nothing changed.
            ConflictError: ``if_revision`` did not match (``REVISION_MISMATCH``).
            FailedPreconditionError: the session is bound to another schema.
            MemoryApiError: the call failed.
        """
        return self._run(
            session_id,
            c.plan_patch_document(session_id, partial, ttl, schema, if_revision, must_exist),
            timeout,
        )

    def put_schema(
        self, name: str, schema: Mapping[str, Any] | type, *, timeout: float | None = None
    ) -> SchemaInfo:
        """Register or replace the tenant's JSON Schema ``name`` (draft 2020-12).

        Args:
            name: The schema's name (the key pattern: letters, digits, ``_``, ``-``).
            schema: A JSON Schema dict, or a pydantic model class (its
                ``model_json_schema()``).
            timeout: Seconds this call may take, retries included; None: the
                client's ``timeout``.

        Raises:
            InvalidArgumentError: the schema is invalid, too large (64 KiB) or has a
                ``$ref`` that is not local (``SCHEMA_INVALID``).
            LimitExceededError: the tenant has too many schemas (``TOO_MANY_SCHEMAS``).
            MemoryApiError: the call failed.
        """
        return self._run(None, c.plan_put_schema(name, schema), timeout)

    def get_schema(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The JSON Schema registered as ``name``.

        Raises:
            NotFoundError: no schema of that name (``SCHEMA_NOT_FOUND``).
            MemoryApiError: the call failed.
        """
        return self._run(None, c.plan_get_schema(name), timeout)

    def list_schemas(self, *, timeout: float | None = None) -> list[SchemaInfo]:
        """Describe the tenant's schemas, sorted by name.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(None, c.plan_list_schemas(), timeout)

    def delete_schema(self, name: str, *, timeout: float | None = None) -> bool:
        """Remove a schema; True when it existed. Sessions bound to it are no longer validated.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(None, c.plan_delete_schema(name), timeout)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> MemoryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _retrying(
        self, method: str, invoke: Callable[[float], Any], retryable: bool, budget: float
    ) -> Any:
        """Call ``invoke(timeout)``; retry UNAVAILABLE with backoff while ``retryable``."""
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            try:
                return invoke(max(deadline - time.monotonic(), 0.001))
            except grpc.RpcError as err:
                error = from_grpc(err)
                delay = c.retry_delay(error, attempt, self._max_attempts, retryable, deadline)
                log_retry(method, attempt, error, delay, retryable)
                if delay is None:
                    raise error from None
                time.sleep(delay)

    def _run(self, session_id: str | None, plan: Plan[T], timeout: float | None) -> T:
        budget = call_budget(timeout, self._timeout)
        check_available(session_id, self._metadata)
        method = getattr(self._stub, plan.method)
        response = self._retrying(
            plan.method,
            lambda remaining: method(plan.request, timeout=remaining, metadata=self._metadata),
            plan.idempotent,
            budget,
        )
        return plan.convert(response)

    def _upload(
        self,
        session_id: str,
        key: str,
        data: FileData,
        *,
        ttl: int,
        mime: str,
        upload_id: str | None,
        if_version: int | None,
        only_if_absent: bool,
        progress: Progress | None,
        timeout: float | None,
    ) -> FileInfo:
        budget = call_budget(timeout, self._upload_timeout)
        check_available(session_id, self._metadata)
        plan = c.plan_set_file(
            session_id,
            key,
            data,
            mime=mime,
            ttl=ttl,
            upload_id=upload_id,
            if_version=if_version,
            only_if_absent=only_if_absent,
            progress=progress,
        )
        response = self._retrying(
            "SetFile",
            lambda remaining: self._stub.SetFile(
                plan.requests(), timeout=remaining, metadata=self._metadata
            ),
            plan.retryable,
            budget,
        )
        return c.file_info_of(response.file)

    def _reader(self, request: Any, timeout: float | None) -> Any:
        budget = call_budget(timeout, self._upload_timeout)
        return self._stub.ReadFile(request, timeout=budget, metadata=self._metadata)

    def _watcher(self, request: Any, timeout: float | None) -> Any:
        # No deadline by default: a Watch stream lives as long as its reader wants it.
        return self._stub.Watch(request, timeout=timeout, metadata=self._metadata)


class Session:
    """One conversation's memory (from `MemoryClient.session`)."""

    def __init__(self, client: MemoryClient, session_id: str | None) -> None:
        self._client = client
        self.session_id = session_id or ""
        self._revision: int | None = None

    def __repr__(self) -> str:
        return f"Session(session_id={self.session_id!r})"

    @property
    def revision(self) -> int | None:
        """The session revision last seen by `document` or `update`; None before."""
        return self._revision

    @property
    def available(self) -> bool:
        """False when the session id or the API key is missing; calls then raise."""
        return bool(self.session_id) and self._client._metadata is not None

    def _run(self, plan: Plan[T], timeout: float | None) -> T:
        return self._client._run(self.session_id, plan, timeout)

    @overload
    def get(
        self, key: str, default: None = None, *, timeout: float | None = None
    ) -> Value | None: ...

    @overload
    def get(self, key: str, default: bool, *, timeout: float | None = None) -> bool: ...

    @overload
    def get(self, key: str, default: int, *, timeout: float | None = None) -> int | float: ...

    @overload
    def get(self, key: str, default: float, *, timeout: float | None = None) -> float: ...

    @overload
    def get(self, key: str, default: str, *, timeout: float | None = None) -> str: ...

    @overload
    def get(
        self, key: str, default: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]: ...

    @overload
    def get(
        self, key: str, default: builtins.list[Any], *, timeout: float | None = None
    ) -> builtins.list[Any]: ...

    def get(self, key: str, default: Any = None, *, timeout: float | None = None) -> Any:
        """The value of ``key`` converted to the type of ``default``; ``default`` when missing.

        ``key`` may be a path into a JSON value or a file's info: ``"lastOrder.status"``,
        ``"cart.items.0.name"``; a missing path is a miss. The conversions (the same
        in the TypeScript and Go clients):

        - no default: the value as stored (`Value`); None when missing (or a
          JSON null);
        - ``False``/``True``: a boolean, or the string ``"true"``/``"false"``;
        - an int (``get("n", 0)``): any number, and a string holding a decimal
          numeral (``"42"``, ``"-2.5"``, ``"1e3"``; not ``" 12"``, ``"1_000"``,
          ``"0x10"``, ``"inf"``) whose value is finite. The result is an int when
          the number is whole and below 2**53 in magnitude, else a float: 2.5
          stays 2.5;
        - a float (``get("x", 0.0)``): the same numbers, always as a float;
        - a str: a string as is, a boolean as ``"true"``/``"false"``, a number as
          JavaScript writes it (``"7"``, ``"2.5"``, ``"1e-7"``);
        - a dict: a JSON object; a list: a JSON array.

        A JSON scalar stored with `set_json` converts as the scalar does; a JSON
        object or array never converts to a scalar, nor a JSON null to anything.

        Args:
            key: The key, or a path into a JSON value.
            default: What a miss returns (a dict or list default as a fresh copy,
                so changing the result never changes the default); its type is
                the type asked for.
            timeout: Seconds this call may take, retries included; None: the
                client's ``timeout``.

        Raises:
            MemoryTypeError: the stored value cannot be converted exactly.
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_get(self.session_id, key, default), timeout)

    @overload
    def get_json(
        self, key: str, default: None = None, *, timeout: float | None = None
    ) -> Json | None: ...

    @overload
    def get_json(self, key: str, default: T, *, timeout: float | None = None) -> T: ...

    def get_json(self, key: str, default: Any = None, *, timeout: float | None = None) -> Any:
        """The JSON value of ``key`` (parsed); ``default`` when missing.

        Typed as ``default`` (``get_json("cart", EMPTY_CART)`` is typed as
        ``EMPTY_CART``), or ``Json | None`` without one. The stored value is not
        checked against that type: validate it (e.g. with a pydantic model) when
        another writer may store another shape. A string, number or boolean comes
        back as itself, a file as its description (as in `document`), a stored JSON
        null as None. A miss returns ``default`` itself, or a fresh copy of it when
        it is a dict or a list (``cart["items"].append(...)`` on the result never
        changes ``EMPTY_CART``).

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_get_json(self.session_id, key, default), timeout)

    def get_entry(self, key: str, *, timeout: float | None = None) -> Entry | None:
        """The value with its kind, version and expiry; None when missing.

        ``key`` may be a path (``"lastOrder.status"``): the entry then holds the
        value at the path with its own kind, and the key's version and expiry.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_get_entry(self.session_id, key), timeout)

    def get_many(
        self, keys: Iterable[str], *, timeout: float | None = None
    ) -> dict[str, Value | None]:
        """Up to 100 values (keys or paths) in one round trip; missing ones are left out.

        A key holding a JSON null is in the result, as None.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_get_many(self.session_id, keys), timeout)

    def set(
        self,
        key: str,
        value: Scalar,
        *,
        ttl: int | None = None,
        if_version: int | None = None,
        only_if_absent: bool = False,
        timeout: float | None = None,
    ) -> WriteResult:
        """Store a string, number or boolean (``ttl`` seconds, default one day).

        Raises:
            ConflictError: the precondition failed; nothing was written.
            MemoryApiError: the call failed.
        """
        return self._run(
            c.plan_set(self.session_id, key, value, ttl, if_version, only_if_absent), timeout
        )

    def set_json(
        self,
        key: str,
        value: Any,
        *,
        ttl: int,
        if_version: int | None = None,
        only_if_absent: bool = False,
        timeout: float | None = None,
    ) -> WriteResult:
        """Store any JSON-serializable value for ``ttl`` seconds (required, at most a day).

        Raises:
            ConflictError: the precondition failed; nothing was written.
            MemoryApiError: the call failed.
        """
        return self._run(
            c.plan_set_json(self.session_id, key, value, ttl, if_version, only_if_absent), timeout
        )

    def set_many(
        self,
        entries: Mapping[str, Any] | Iterable[SetItem],
        *,
        ttl: int | None = None,
        timeout: float | None = None,
    ) -> builtins.list[WriteResult]:
        """Store up to 100 values all or nothing (non-scalars are stored as JSON).

        Raises:
            ConflictError: a precondition failed; nothing was written.
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_set_many(self.session_id, entries, ttl), timeout)

    def delete(self, keys: str | Iterable[str], *, timeout: float | None = None) -> int:
        """Delete one key or up to 100; returns how many existed.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_delete(self.session_id, keys), timeout)

    def increment(
        self,
        key: str,
        delta: float = 1,
        *,
        ttl: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> int | float:
        """Add ``delta`` atomically and return the new number (missing counts from 0).

        A request id (generated when not given) makes retries count once: the same id
        with the same key, delta and TTL within 10 minutes returns the first result.
        Pass your own to make retries of your own (e.g. after a crash) count once too;
        ``request_id=""`` sends none (no deduplication, and no automatic retry).

        Raises:
            NotANumberError: the key holds another kind of value.
            InvalidArgumentError: a limit was broken, or ``request_id`` was already used
                in this session for another key, delta or TTL (``REQUEST_ID_REUSED``).
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_increment(self.session_id, key, delta, ttl, request_id), timeout)

    def touch(self, keys: str | Iterable[str], *, ttl: int, timeout: float | None = None) -> int:
        """Give keys a new TTL without rewriting them; returns how many existed.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_touch(self.session_id, keys, ttl), timeout)

    def list(self, *, timeout: float | None = None) -> builtins.list[EntryInfo]:
        """Describe every live key (kind, size, expiry, version), sorted by key.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_list(self.session_id), timeout)

    def clear(self, *, timeout: float | None = None) -> int:
        """Delete the whole session; returns how many keys were deleted.

        Raises:
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_clear(self.session_id), timeout)

    @overload
    def document(
        self,
        *,
        paths: str | Iterable[str] | None = None,
        model: None = None,
        defaults: bool = True,
        timeout: float | None = None,
    ) -> Document: ...

    @overload
    def document(
        self,
        *,
        paths: str | Iterable[str] | None = None,
        model: type[M],
        defaults: bool = True,
        timeout: float | None = None,
    ) -> M: ...

    def document(
        self,
        *,
        paths: str | Iterable[str] | None = None,
        model: type[Any] | None = None,
        defaults: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """The whole session as one JSON object, with its revision (see `Document`).

        Each key is a top-level field; files appear as their FileInfo fields. On a
        session bound to a schema, the schema's defaults fill absent fields.

        Args:
            paths: Only these paths (``"user"``, ``"order.status"``), nested as in
                the document; missing ones are left out.
            model: A pydantic model class: return ``model.model_validate(document)``.
            defaults: Fill the bound schema's defaults into absent fields.
            timeout: Seconds this call may take, retries included; None: the
                client's ``timeout``.

        Returns:
            A `Document` (a ``dict``), or an instance of ``model``.

        Raises:
            FailedPreconditionError: the document is too large to read at once
                (``DOCUMENT_TOO_LARGE``); read parts of it with ``paths``.
            pydantic.ValidationError: the document does not fit ``model``.
            MemoryApiError: the call failed.
        """
        document = self._run(c.plan_get_document(self.session_id, paths, defaults), timeout)
        self._revision = document.revision
        return document if model is None else c.validate_model(model, document)

    def update(
        self,
        partial: Partial,
        *,
        ttl: int,
        schema: str | None = None,
        if_revision: int | None = None,
        must_exist: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Merge ``partial`` into the session's document atomically (RFC 7396).

        ``None`` deletes a field, dicts merge recursively, anything else replaces.
        Every top-level key the patch touches is written with ``ttl``; the others
        keep their values and TTLs. Concurrent updates never lose each other's
        changes.

        Args:
            partial: A dict, or a pydantic model instance (its set fields:
                ``model_dump(mode="json", exclude_unset=True)``).
            ttl: Seconds until every top-level key the patch writes expires (1 to 86,400).
            schema: The schema to validate against; binds an unbound session.
            if_revision: Apply only if the session's revision is this one (e.g.
                `revision` after `document`).
            must_exist: Fail when the session has no live key.
            timeout: Seconds this call may take, retries included; None: the
                client's ``timeout``.

        Returns:
            The session's revision after the update (also kept in `revision`).

        Raises:
            SchemaViolationError: the result would not validate; nothing changed.
            InvalidArgumentError: the patch is not an object (``INVALID_PATCH``) or
                breaks a per-kind limit; nothing changed.
            ConflictError: ``if_revision`` did not match (``REVISION_MISMATCH``).
            FailedPreconditionError: the session is bound to another schema
                (``SCHEMA_MISMATCH``).
            NotFoundError: ``must_exist`` and the session has no live key.
            MemoryApiError: the call failed.
        """
        revision = self._run(
            c.plan_patch_document(self.session_id, partial, ttl, schema, if_revision, must_exist),
            timeout,
        )
        self._revision = revision
        return revision

    def bind_schema(self, name: str | None, *, timeout: float | None = None) -> int:
        """Bind the session to schema ``name`` (None or ``""`` unbinds); the revision.

        From then on every write to the session is validated against it.

        Raises:
            SchemaViolationError: the current document does not validate.
            NotFoundError: no schema of that name (``SCHEMA_NOT_FOUND``).
            MemoryApiError: the call failed.
        """
        return self._run(c.plan_bind_schema(self.session_id, name), timeout)

    def watch(
        self, *, after_revision: int | None = None, timeout: float | None = None
    ) -> ChangeStream:
        """The session's changes as they happen, as an iterator of `Change`.

        Starts now, or, with ``after_revision``, first replays the later changes the
        server still has (a ``"reset"`` change says some are gone: re-read the
        document). Resumes by itself after a dropped stream. Stop it with ``close()``
        or a ``with`` block; breaking out of a loop over it also ends the call.
        Without ``timeout`` it runs until stopped; with one, iterating raises
        `DeadlineExceededError` once ``timeout`` seconds have passed since `watch`.

        Example:
            >>> with memory.watch() as changes:  # doctest: +SKIP
            ...     for change in changes:
            ...         print(change.operation, change.key)

        Raises:
            MemoryUnavailableError: no session id or no API key.
        """
        check_available(self.session_id, self._client._metadata)
        seconds = None if timeout is None else call_budget(timeout, 0.0)
        cursor = c.WatchCursor(self.session_id, after_revision, self._client._max_attempts, seconds)
        return ChangeStream(self._client._watcher, cursor)

    def set_file(
        self,
        key: str,
        data: FileData,
        *,
        ttl: int,
        mime: str,
        upload_id: str | None = None,
        if_version: int | None = None,
        only_if_absent: bool = False,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> FileInfo:
        """Upload a file (at most 10 MiB) for ``ttl`` seconds (required, at most a week).

        ``data`` is bytes, a base64 str, a path, a binary file object or an
        iterable of byte chunks; it is streamed in 256 KiB chunks. ``progress``
        is called with (bytes sent, total or None). An upload id (generated when
        not given) makes a retry return the committed file instead of storing
        it twice; bytes and paths are retried on UNAVAILABLE. ``timeout`` bounds
        the whole upload, retries included (None: the client's ``upload_timeout``).

        Raises:
            InvalidArgumentError: a limit, the MIME type or the content was refused.
            ConflictError: the precondition failed; nothing was written.
            MemoryApiError: the call failed.
        """
        return self._client._upload(
            self.session_id,
            key,
            data,
            ttl=ttl,
            mime=mime,
            upload_id=upload_id,
            if_version=if_version,
            only_if_absent=only_if_absent,
            progress=progress,
            timeout=timeout,
        )

    def get_file(
        self, key: str, *, url_ttl: int | None = None, timeout: float | None = None
    ) -> FileHandle | None:
        """A handle on the file under ``key`` (with a presigned URL), or None when missing.

        ``timeout`` bounds this call; reading the bytes through the handle has its own
        (``timeout=`` of its methods, by default the client's ``upload_timeout``).

        Raises:
            FailedPreconditionError: the key holds another kind of value.
            MemoryApiError: the call failed.
        """
        found = self._run(c.plan_get_file(self.session_id, key, url_ttl), timeout)
        if found is None:
            return None
        info, url, url_expires_at = found
        return FileHandle(info, url, url_expires_at, self._client._reader, self.session_id)
