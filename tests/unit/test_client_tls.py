"""The Python clients' TLS from the environment (SESSION_MEMORY_TLS*), without a server."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from sessionmemory import AsyncMemoryClient, MemoryClient
from sessionmemory._base import env_channel, env_tls

from ..tls_certs import Authority, Issued

VARIABLES = (
    "SESSION_MEMORY_TLS",
    "SESSION_MEMORY_TLS_CA",
    "SESSION_MEMORY_CLIENT_CERT",
    "SESSION_MEMORY_CLIENT_KEY",
    "SESSION_MEMORY_TLS_SERVER_NAME",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment with no TLS variable set."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki"), "unit")


@pytest.fixture(scope="module")
def client_cert(ca: Authority) -> Issued:
    return ca.issue("client", server=False)


def test_no_variable_is_plaintext(env: pytest.MonkeyPatch) -> None:
    assert env_tls() == (None, ())
    env.setenv("SESSION_MEMORY_TLS", "false")
    assert env_tls() == (None, ())


@pytest.mark.parametrize("flag", ["true", "1", "yes", "TRUE", " on "])
def test_the_flag_alone_is_tls_with_the_default_roots(env: pytest.MonkeyPatch, flag: str) -> None:
    env.setenv("SESSION_MEMORY_TLS", flag)
    credentials, options = env_tls()
    assert isinstance(credentials, grpc.ChannelCredentials)
    assert options == ()


def test_a_ca_a_client_certificate_and_a_server_name_each_imply_tls(
    env: pytest.MonkeyPatch, ca: Authority, client_cert: Issued
) -> None:
    env.setenv("SESSION_MEMORY_TLS_CA", str(ca.pem))
    assert isinstance(env_tls()[0], grpc.ChannelCredentials)
    env.delenv("SESSION_MEMORY_TLS_CA")
    env.setenv("SESSION_MEMORY_CLIENT_CERT", str(client_cert.cert))
    env.setenv("SESSION_MEMORY_CLIENT_KEY", str(client_cert.key))
    assert isinstance(env_tls()[0], grpc.ChannelCredentials)
    env.delenv("SESSION_MEMORY_CLIENT_CERT")
    env.delenv("SESSION_MEMORY_CLIENT_KEY")
    env.setenv("SESSION_MEMORY_TLS_SERVER_NAME", "memory.internal")
    credentials, options = env_tls()
    assert isinstance(credentials, grpc.ChannelCredentials)
    assert options == (("grpc.ssl_target_name_override", "memory.internal"),)


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("SESSION_MEMORY_CLIENT_CERT", "SESSION_MEMORY_CLIENT_KEY"),
        ("SESSION_MEMORY_CLIENT_KEY", "SESSION_MEMORY_CLIENT_CERT"),
    ],
)
def test_a_certificate_without_its_key_is_a_configuration_error(
    env: pytest.MonkeyPatch, client_cert: Issued, given: str, missing: str
) -> None:
    env.setenv(given, str(client_cert.cert if given.endswith("CERT") else client_cert.key))
    message = f"{given} is set without {missing}: a client certificate needs its private key"
    with pytest.raises(ValueError, match=message):
        env_tls()
    with pytest.raises(ValueError, match=message):
        MemoryClient.from_env()
    with pytest.raises(ValueError, match=message):
        AsyncMemoryClient.from_env()


def test_other_configurations_that_do_not_fit(
    env: pytest.MonkeyPatch, ca: Authority, tmp_path: Path
) -> None:
    env.setenv("SESSION_MEMORY_TLS", "maybe")
    with pytest.raises(ValueError, match="SESSION_MEMORY_TLS='maybe': use true or false"):
        env_tls()
    env.setenv("SESSION_MEMORY_TLS", "false")
    env.setenv("SESSION_MEMORY_TLS_CA", str(ca.pem))
    with pytest.raises(ValueError, match="SESSION_MEMORY_TLS=false but SESSION_MEMORY_TLS_CA"):
        env_tls()
    env.delenv("SESSION_MEMORY_TLS")
    env.setenv("SESSION_MEMORY_TLS_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match=r"missing\.pem: cannot read it"):
        env_tls()
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82 not PEM")
    env.setenv("SESSION_MEMORY_TLS_CA", str(not_pem))
    with pytest.raises(ValueError, match=r"ca\.der: not a PEM file"):
        env_tls()


def test_explicit_credentials_win_over_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("SESSION_MEMORY_CLIENT_CERT", "/nowhere/cert.pem")  # would be an error
    mine = grpc.ssl_channel_credentials()
    assert env_channel(mine, [("grpc.primary_user_agent", "x")]) == (
        mine,
        [("grpc.primary_user_agent", "x")],
    )
    with pytest.raises(ValueError, match="SESSION_MEMORY_CLIENT_CERT is set without"):
        env_channel(None, ())  # no credentials given: the environment decides
    env.delenv("SESSION_MEMORY_CLIENT_CERT")
    env.setenv("SESSION_MEMORY_TLS_SERVER_NAME", "memory.internal")
    credentials, options = env_channel(None, [("grpc.primary_user_agent", "x")])
    assert isinstance(credentials, grpc.ChannelCredentials)
    assert options == (
        ("grpc.ssl_target_name_override", "memory.internal"),
        ("grpc.primary_user_agent", "x"),
    )
