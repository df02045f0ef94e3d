"""`meltano run` in a process group of its own (the tap and the target join it), which never
outlives the run: it dies with the run worker (PDEATHSIG), is stopped at the maximum run
time, and whatever of it is left when Meltano exits is killed, so no orphan of a dead run
can write beside the next one; a run whose step is interrupted (terminated from Dagster's UI,
its worker sent SIGTERM) stops the group before waiting for it. `GroupedProcess` starts
Meltano cold; `WarmProcess` hands
the command to the run worker's pre-forked, warm child (`orchestrate.warm_meltano`)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t

from orchestrate import run_guard, warm_meltano
from orchestrate.run_guard import group_alive

PR_SET_PDEATHSIG = 1
STOP_GRACE = 10  # seconds between SIGTERM and SIGKILL when a run is stopped
GUARD = run_guard.__file__


class GroupLimit:
    """The maximum run time of the process group led by `self.pid`, and its end."""

    pid: int
    timed_out = False

    def _start_limit(self, limit: float) -> None:
        self._timer = threading.Timer(limit, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.timed_out = True
        self.stop_group(grace=10)

    def stop_group(self, grace: float) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left after `grace` seconds."""
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while group_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(self.pid, signal.SIGKILL)

    def _end(self) -> None:
        self._timer.cancel()
        if group_alive(self.pid):  # a plugin left behind by a Meltano that died
            self.stop_group(grace=5)


class GroupedProcess(subprocess.Popen, GroupLimit):
    def __init__(self, command: list[str], *, limit: float, **kwargs: t.Any) -> None:
        super().__init__(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace", start_new_session=True,
                         preexec_fn=_die_with_parent, **kwargs)
        self._start_limit(limit)

    def __exit__(self, *exc: t.Any) -> None:
        if exc[0] is not None:  # interrupted: Meltano, the tap and the target stop now
            self.stop_group(grace=STOP_GRACE)
        super().__exit__(*exc)
        self._end()


class WarmProcess(GroupLimit):
    def __init__(self, zygote: warm_meltano.Zygote, command: list[str], *, cwd: str,
                 env: dict[str, str], limit: float) -> None:
        warm_meltano.start(zygote, command, env, cwd)
        self.pid = zygote.pid
        self.stdout = os.fdopen(zygote.output, "r", errors="replace")
        self.returncode: int | None = None
        self._start_limit(limit)

    def __enter__(self) -> WarmProcess:
        return self

    def __exit__(self, *exc: t.Any) -> None:
        if exc[0] is not None:
            self.stop_group(grace=STOP_GRACE)
        self.stdout.close()
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._end()


def meltano_process(command: list[str], *, cwd: str, env: dict[str, str],
                    limit: float) -> GroupedProcess | WarmProcess:
    """Meltano from the warm child when the run worker forked one, else a cold start."""
    zygote = warm_meltano.take()
    if zygote is None:
        return GroupedProcess(command, cwd=cwd, env=env, limit=limit)
    return WarmProcess(zygote, command, cwd=cwd, env=env, limit=limit)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Guard:
    """`orchestrate/run_guard.py` beside a run's process group, holding the lock
    connection's socket `fd`: the account's lock outlives every process of the run."""

    def __init__(self, pgid: int, fd: int) -> None:
        self._proc = subprocess.Popen([sys.executable, "-S", "-E", GUARD, str(pgid)],
                                      pass_fds=(fd,), env={}, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait()
