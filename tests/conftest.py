"""Fixtures: a fresh fake API per test, and a secret guard over every test's output."""

from __future__ import annotations

import os
import subprocess
import typing as t

import pytest

from tests.helpers import OUTPUTS, SECRETS, FakeServer, quiet_sdk_logs, start_server
from tests.pg import MELTANO, TARGET, Cluster, start_cluster, stop_cluster


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


def _unavailable(reason: str) -> t.NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL end-to-end tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster() -> t.Iterator[Cluster]:
    """One throwaway PostgreSQL for the session; in CI its absence is a failure."""
    if not MELTANO.exists() or not TARGET.exists():
        _unavailable("Meltano plugins are not installed (run scripts/setup.sh)")
    try:
        pg = start_cluster()
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        _unavailable(f"PostgreSQL could not start: {exc}")
    yield pg
    stop_cluster(pg)


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    from tests.reliability import COUNTS

    if COUNTS:
        terminalreporter.write_sep("-", "reliability counts (docs/RELIABILITY.md)")
        for what, n in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{what}: {n}")
