"""`meltano run` started warm: Meltano imported once, in the fork server of the run workers.

Meltano's import is about 0.6 s of CPU, a third of what Meltano costs a small account. The
fork server (`orchestrate.launcher`) imports it with Dagster (it preloads `meltano.cli`);
each run worker, while it is still one thread (before Dagster starts any), forks a child
that waits for the run's command. When the asset's step sends it, the child becomes that
`meltano run`: a session and process group of its own, the account's environment and
directory, its output into a pipe the step reads; it dies with the run worker
(PDEATHSIG), and exits unused when the run worker ends without it. Without Meltano in
this venv, `meltano run` starts cold, as its own program.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import traceback
import typing as t

PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15


class Zygote(t.NamedTuple):
    pid: int
    request: int  # write end: the command, as JSON, then closed
    output: int  # read end: the command's stdout and stderr


_zygote: Zygote | None = None


def prefork() -> None:
    """In the run worker, while it is one thread: fork the child that will run Meltano."""
    global _zygote
    if "meltano.cli" not in sys.modules:  # not preloaded: Meltano is not installed here
        return
    request_r, request_w = os.pipe()
    output_r, output_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(request_w)
        os.close(output_r)
        _serve(request_r, output_w)
    os.close(request_r)
    os.close(output_w)
    _zygote = Zygote(pid, request_w, output_r)


def take() -> Zygote | None:
    """The warm child, once (None: start Meltano cold)."""
    global _zygote
    zygote, _zygote = _zygote, None
    return zygote


def start(zygote: Zygote, argv: list[str], env: dict[str, str], cwd: str) -> None:
    with os.fdopen(zygote.request, "w") as request:
        json.dump({"argv": argv, "env": env, "cwd": cwd}, request)


def _serve(request_r: int, output_w: int) -> t.NoReturn:
    code = 1
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        with os.fdopen(request_r) as request:
            raw = request.read()
        if not raw:  # the run ended without Meltano
            os._exit(0)
        command = json.loads(raw)
        os.setsid()
        libc.prctl(PR_SET_NAME, b"meltano")  # what ps and top show for this process
        os.dup2(output_w, 1)
        os.dup2(output_w, 2)
        os.close(output_w)
        os.chdir(command["cwd"])
        os.environ.clear()
        os.environ.update(command["env"])
        sys.argv = command["argv"]
        from meltano.cli import main as meltano_main

        try:
            code = meltano_main() or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
