"""The last process of a run to go: the account's lock outlives every process of the run.

The lock is a session of the state database held by the run worker. Meltano dies with the
worker (PDEATHSIG), but the tap and the target are Meltano's children: if the worker alone
is killed (SIGKILL, the OOM killer), they would be orphaned and go on loading while the
server, seeing the worker's connection end, already frees the lock for the next sync.

So beside each `meltano run` the worker starts this guard, a small process that inherits
the lock connection's socket and never uses it: the connection (and so the lock) ends only
when both have closed it. The guard watches its parent; once the worker is gone it kills
the run's process group, waits until no process of it runs, and exits: only then does the
server see the connection end. When the worker ends its run normally it closes the
connection itself (the server ends the session on its Terminate message, whatever copies
of the socket remain) and stops the guard.

Run by path with the standard library only (`python -S -E run_guard.py PGID`): the
orchestrator's modules import Dagster, which would cost every run a second.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL = 0.2  # seconds between looks at the parent: the lock is held meanwhile anyway


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies, dead but not yet reaped by a
    parent, do not count: Meltano's own stays one until its `with` block waits for it)."""
    for entry in os.listdir("/proc"):
        fields = proc_stat(entry) if entry.isdigit() else None
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def main(argv: list[str]) -> int:
    pgid, parent = int(argv[1]), os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the worker's to handle
    while os.getppid() == parent:  # SIGTERM from the worker ends this at once
        time.sleep(POLL)
    while True:  # the worker is gone: nothing of its run may outlive the lock
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return 0
        if not group_alive(pgid):
            return 0
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
