"""`session-memory serve --env-file F --check-config`: effective settings, secrets redacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sessionmemory_server.cli import main


def test_check_config_reads_the_env_file_and_redacts_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "memory.env"
    env.write_text(
        "SESSION_MEMORY_LISTEN=127.0.0.1:6000\n"
        "SESSION_MEMORY_WORKERS=2\n"
        "SESSION_MEMORY_REDIS_URL=redis://app:s3cret@redis.internal:6380/0\n"
        "SESSION_MEMORY_S3_ACCESS_KEY=AKIAEXAMPLE\n"
        "SESSION_MEMORY_S3_SECRET_KEY=topsecret\n"
        "SESSION_MEMORY_TENANT_READS_PER_SECOND=50\n"
    )
    monkeypatch.setenv("SESSION_MEMORY_TENANT_READS_PER_SECOND", "75")  # the environment wins
    assert main(["serve", "--env-file", str(env), "--check-config", "--workers", "3"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["listen"] == "127.0.0.1:6000"
    assert shown["workers"] == 3  # and flags win over both
    assert shown["tenant_reads_per_second"] == 75
    assert shown["redis_url"] == "redis://app:***@redis.internal:6380/0"
    assert shown["s3_secret_key"] == shown["s3_access_key"] == "**********"
    for secret in ("s3cret", "topsecret", "AKIAEXAMPLE"):
        assert secret not in out


def test_bad_settings_are_named_and_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_MEMORY_WORKERS", "many")
    assert main(["serve", "--check-config"]) == 2
    assert "setting workers:" in capsys.readouterr().err
    monkeypatch.delenv("SESSION_MEMORY_WORKERS")
    assert main(["serve", "--env-file", str(tmp_path / "missing.env"), "--check-config"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_secrets_in_url_queries_and_the_otlp_endpoint_are_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py reads ?password= too; an OTLP endpoint may carry user info.
    monkeypatch.setenv("SESSION_MEMORY_REDIS_URL", "redis://redis:6379/0?password=hunter2&db=1")
    monkeypatch.setenv("SESSION_MEMORY_OTLP_ENDPOINT", "http://user:otlpsecret@collector:4317")
    assert main(["serve", "--check-config"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["redis_url"] == "redis://redis:6379/0?password=***&db=1"
    assert shown["otlp_endpoint"] == "http://user:***@collector:4317"
    for secret in ("hunter2", "otlpsecret"):
        assert secret not in out
