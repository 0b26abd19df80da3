"""What a client shows of itself (repr, version) and how from_env takes its arguments."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import metadata

import grpc
import pytest

import sessionmemory
from sessionmemory import AsyncMemoryClient, MemoryClient, SessionToken

SECRET = "c2VjcmV0LXBhcnQtb2YtdGhlLWtleQ"
KEY = f"smk_3f2a9c_{SECRET}"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SESSION_MEMORY_TLS", "SESSION_MEMORY_TLS_CA", "SESSION_MEMORY_CLIENT_CERT",
                 "SESSION_MEMORY_CLIENT_KEY", "SESSION_MEMORY_TLS_SERVER_NAME"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SESSION_MEMORY_ADDR", "10.1.2.3:7000")
    monkeypatch.setenv("SESSION_MEMORY_API_KEY", KEY)
    return monkeypatch


def test_a_client_repr_shows_its_settings_but_never_the_keys_secret() -> None:
    with MemoryClient("127.0.0.1:50051", api_key=KEY, timeout=10) as client:
        assert repr(client) == (
            "MemoryClient(address='127.0.0.1:50051', tls=False,"
            " api_key='smk_3f2a9c_\u2026(redacted)', timeout=10.0)"
        )
        assert repr(client.session("conv-1")) == "Session(session_id='conv-1')"
    tls = MemoryClient("memory.example:443", credentials=grpc.ssl_channel_credentials())
    assert repr(tls) == (
        "MemoryClient(address='memory.example:443', tls=True, api_key=None, timeout=5.0)"
    )
    tls.close()
    # A session token's payload names its session: nothing of it is shown.
    token = MemoryClient(api_key="smt_eyJzIjoiY29udi0xIn0.c2ln")
    assert "api_key='smt_\u2026(redacted)'" in repr(token) and "eyJ" not in repr(token)
    token.close()
    other = MemoryClient(api_key="not-a-key-format")
    assert "api_key='\u2026(redacted)'" in repr(other) and "not-a-key" not in repr(other)
    other.close()


async def test_an_async_client_repr_is_the_same_shape() -> None:
    async with AsyncMemoryClient("127.0.0.1:1", api_key=KEY) as client:
        assert repr(client) == (
            "AsyncMemoryClient(address='127.0.0.1:1', tls=False,"
            " api_key='smk_3f2a9c_\u2026(redacted)', timeout=5.0)"
        )
        assert repr(client.session("c")) == "AsyncSession(session_id='c')"
        stream = client.session("c").watch()
        assert repr(stream) == "AsyncChangeStream(session_id='c', revision=None, closed=False)"
        await stream.aclose()


def test_a_session_tokens_repr_leaves_the_token_out() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    token = SessionToken("smt_payload.signature", "tok-1", when)
    assert "smt_" not in repr(token) and "token_id='tok-1'" in repr(token)


def test_from_env_reads_the_environment(env: pytest.MonkeyPatch) -> None:
    with MemoryClient.from_env(timeout=2) as client:
        assert repr(client) == (
            "MemoryClient(address='10.1.2.3:7000', tls=False,"
            " api_key='smk_3f2a9c_\u2026(redacted)', timeout=2.0)"
        )
        assert SECRET not in repr(client)


def test_from_env_arguments_win_over_the_environment(env: pytest.MonkeyPatch) -> None:
    with MemoryClient.from_env(address="127.0.0.1:9", api_key="smk_other_x") as client:
        assert "address='127.0.0.1:9'" in repr(client)
        assert "api_key='smk_other_\u2026(redacted)'" in repr(client)
    env.setenv("SESSION_MEMORY_TLS", "true")  # credentials from the environment...
    with MemoryClient.from_env() as client:
        assert "tls=True" in repr(client)
    env.setenv("SESSION_MEMORY_TLS", "maybe")  # ...unless given: then it is not read
    with MemoryClient.from_env(credentials=grpc.ssl_channel_credentials()) as client:
        assert "tls=True" in repr(client)
    with pytest.raises(ValueError, match="SESSION_MEMORY_TLS='maybe'"):
        AsyncMemoryClient.from_env()


def test_from_env_takes_only_named_keywords() -> None:
    with pytest.raises(TypeError, match="timout"):
        MemoryClient.from_env(timout=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        MemoryClient.from_env("127.0.0.1:1")  # type: ignore[misc]


def test_the_package_version_is_the_distributions() -> None:
    assert sessionmemory.__version__ == metadata.version("session-memory-client")
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", sessionmemory.__version__)


# --- timeouts as arguments ------------------------------------------------------------


@pytest.mark.parametrize("cls", [MemoryClient, AsyncMemoryClient])
@pytest.mark.parametrize("name", ["timeout", "upload_timeout"])
@pytest.mark.parametrize("bad", [0, -1, float("nan")])
async def test_a_client_refuses_a_timeout_that_is_not_a_positive_duration(
    cls: type[MemoryClient] | type[AsyncMemoryClient], name: str, bad: float
) -> None:
    """Before, timeout=0 or -1 was taken and every call got a 1 ms deadline."""
    with pytest.raises(ValueError, match=f"{name}="):
        cls("127.0.0.1:1", **{name: bad})  # type: ignore[arg-type]


def test_a_timeout_of_the_wrong_type_says_so() -> None:
    with pytest.raises(TypeError, match=r"timeout='3': a number of seconds, not str"):
        MemoryClient("127.0.0.1:1", timeout="3")  # type: ignore[arg-type]
    with (
        MemoryClient("127.0.0.1:1", api_key=KEY) as client,
        pytest.raises(TypeError, match="timeout='3'"),
    ):
        client.session("s").get("k", timeout="3")  # type: ignore[arg-type]


def test_an_infinite_or_huge_timeout_is_capped_below_what_grpc_can_carry() -> None:
    """gRPC fails a call at once (DEADLINE_EXCEEDED) past ~9e9 s: inf meant "no deadline"."""
    from sessionmemory._base import MAX_TIMEOUT, call_budget

    assert MAX_TIMEOUT < 9e9
    assert call_budget(float("inf"), 5.0) == MAX_TIMEOUT
    assert call_budget(1e12, 5.0) == MAX_TIMEOUT
    assert call_budget(None, 5.0) == 5.0
    assert call_budget(0.25, 5.0) == 0.25
    with MemoryClient("127.0.0.1:1", timeout=float("inf")) as client:
        assert f"timeout={MAX_TIMEOUT!r}" in repr(client)


def test_a_watch_never_sleeps_past_its_timeout_before_resuming() -> None:
    """A dropped stream's backoff (here the server's 10 s RetryInfo) is cut to the time left."""
    from sessionmemory import ServiceUnavailableError
    from sessionmemory._convert import WatchCursor

    cursor = WatchCursor("s", None, max_attempts=5, timeout=0.5)
    dropped = ServiceUnavailableError(
        "server going away", status=grpc.StatusCode.UNAVAILABLE, retry_after=10.0
    )
    assert 0 <= cursor.ended(dropped) <= 0.5
    assert WatchCursor("s", None, max_attempts=5).ended(dropped) == 10.0  # no timeout: as sent
