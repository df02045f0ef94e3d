"""A target that dies never leaves the tap running: whenever and however the reader of its
output goes away (bytes left in the pipe, mid-line, at a STATE, after a SIGTERM), the tap
stops within seconds, non-zero, with one line saying so. Seeded runs of stand-in targets
(`tests/standin_target.py`); a hang fails the test at its time-out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import OUTPUTS, FakeServer, config_for, start_server, tap_command
from tests.pg import ROOT

pytestmark = pytest.mark.e2e
RUNS = {"small": 4, "full": 16}[os.environ.get("TEST_SCALE", "small")]
PROMPT_SECONDS = 20  # a tap that has not exited by then hangs (it takes well under 2 s)
GONE = "the reader of the tap's output (the target) went away"


@pytest.fixture(scope="module")
def busy() -> FakeServer:
    """Enough output to fill a pipe several times, with STATE lines longer than PIPE_BUF
    (each carries the types remembered for every stream; drift makes them many)."""
    fake = start_server(scale=600, segments=8, drift_seed=7)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def start_pipe(server: FakeServer, mode: str, seed: int, tmp: Path
               ) -> tuple[subprocess.Popen, subprocess.Popen, Path]:
    config = tmp / "config.json"
    config.write_text(json.dumps(config_for(server, page_size=50)))
    err = tmp / "tap.err"
    with err.open("wb") as err_file:  # a file: an undrained stderr pipe would block the tap
        tap = subprocess.Popen([*tap_command(), "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=err_file,
                               stdin=subprocess.DEVNULL)
    target = subprocess.Popen([sys.executable, "-m", "tests.standin_target", mode, str(seed)],
                              stdin=tap.stdout, stderr=subprocess.PIPE, cwd=ROOT)
    tap.stdout.close()  # only the target holds the read end now
    return tap, target, err


def wait_promptly(tap: subprocess.Popen) -> int:
    try:
        return tap.wait(timeout=PROMPT_SECONDS)
    except subprocess.TimeoutExpired:
        tap.kill()
        tap.wait()
        pytest.fail(f"the tap was still running {PROMPT_SECONDS}s after its target died")


@pytest.mark.parametrize("mode", ["stall", "midline", "at_state"])
def test_the_tap_stops_when_its_target_dies(mode: str, busy: FakeServer, tmp_path: Path
                                            ) -> None:
    stopped = 0
    for seed in range(RUNS):
        tap, target, err = start_pipe(busy, mode, seed, tmp_path)
        target.wait(timeout=60)
        code = wait_promptly(tap)
        text = err.read_text()
        OUTPUTS.append(text)
        if code == 0:  # the target outlived the whole run: nothing to check
            continue
        stopped += 1
        assert code == 1, text[-2000:]
        last = text.strip().splitlines()[-1]
        assert GONE in last, last
        assert "Traceback" not in text
    assert stopped >= RUNS - 1, "the stand-in targets should die before the tap finishes"


def test_sigterm_while_the_target_stalls_then_dies(busy: FakeServer, tmp_path: Path) -> None:
    for seed in range(RUNS):
        tap, target, err = start_pipe(busy, "hold", seed, tmp_path)
        assert target.stderr.readline().strip() == b"stalled"  # the pipe fills from now on
        tap.send_signal(signal.SIGTERM)
        target.kill()  # the reader dies while the tap is stopping
        target.wait()
        target.stderr.close()
        code = wait_promptly(tap)
        text = err.read_text()
        OUTPUTS.append(text)
        assert code == 143, text[-2000:]
        assert "Stopped by SIGTERM" in text
        assert "Traceback" not in text
