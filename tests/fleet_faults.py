"""Finding and killing the processes of one account's fleet run, from outside, as the OOM
killer or a node loss would: by what each process is (its command line) and whose it is
(its environment: the account's API URL or warehouse schema)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def processes() -> dict[int, tuple[str, dict[str, str], int]]:
    """pid: (command line, environment, parent pid) of every process we may read."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        cmdline = _read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace")
        environ = dict(item.split("=", 1) for item in
                       _read(pid, "environ").decode(errors="replace").split("\0") if "=" in item)
        stat = _read(pid, "stat").decode(errors="replace")
        parent = int(stat.rsplit(")", 1)[1].split()[1]) if ")" in stat else 0
        if cmdline:
            out[pid] = (cmdline, environ, parent)
    return out


def of_account(schema: str, part: str) -> list[int]:
    """The account's processes of one part: "tap", "target" or "meltano" (the parent of
    its tap: a warm `meltano run` is a fork of the run worker, so neither its command line
    nor its initial environment names it)."""
    table = processes()
    found = []
    for pid, (cmdline, environ, parent) in table.items():
        if environ.get("TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA") != schema:
            continue
        program = {"tap": "/bin/tap-analytics", "target": "/bin/target-postgres"}.get(part)
        if program and program in cmdline:
            found.append(pid)
        elif part == "meltano" and "/bin/tap-analytics" in cmdline and parent in table:
            found.append(parent)
    return sorted(set(found))


def whole_run(schema: str) -> list[int]:
    """Every process of the account's run: its Dagster run worker and all below it."""
    table = processes()
    meltano = of_account(schema, "meltano")
    if not meltano:
        return []
    top = table[meltano[0]][2]  # the run worker that runs the asset's step
    assert "multiprocessing" in table[top][0], table[top][0]  # forked by WarmRunLauncher
    return descendants(top, table)


def descendants(top: int, table: dict | None = None) -> list[int]:
    """`top` and every process below it."""
    table = table if table is not None else processes()
    below, frontier = {top}, [top]
    while frontier:
        parent = frontier.pop()
        for child, (_, _, ppid) in table.items():
            if ppid == parent and child not in below:
                below.add(child)
                frontier.append(child)
    return sorted(below)


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
