"""Fixtures: a fresh fake API per test, and a secret guard over every test's output."""

from __future__ import annotations

import typing as t

import pytest

from tests.helpers import OUTPUTS, SECRETS, FakeServer, quiet_sdk_logs, start_server


@pytest.fixture
def server() -> t.Iterator[FakeServer]:
    fake = start_server(scale=120, segments=6)
    yield fake
    SECRETS.update(fake.secrets())
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture(autouse=True)
def secret_guard(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
                 ) -> t.Iterator[None]:
    """Fail any test whose output (logs, stdout, stderr, CLI runs) holds a secret."""
    quiet_sdk_logs()
    OUTPUTS.clear()
    yield
    captured = capsys.readouterr()
    texts = [*OUTPUTS, caplog.text, captured.out, captured.err]
    leaked = sorted({s for s in SECRETS if len(s) >= 4 and any(s in text for text in texts)})
    OUTPUTS.clear()
    assert not leaked, f"secret value(s) printed during the test: {len(leaked)} found"
