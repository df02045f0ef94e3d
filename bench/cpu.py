"""CPU time: of the whole machine, and of each program on it (where the CPU went)."""

from __future__ import annotations

import os
import threading

TICK = os.sysconf("SC_CLK_TCK")


def machine_seconds() -> float:
    """CPU seconds every core has spent busy since boot (all but idle and iowait)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user..steal, less idle and iowait
    return busy / TICK


def own_seconds() -> float:
    """This process's CPU (the fake APIs run in it as threads)."""
    times = os.times()
    return times.user + times.system


class Busy:
    """`with Busy() as busy:`: `busy.seconds` is the machine's CPU in the block, less this
    process's own (the fake APIs and the samplers)."""

    def __enter__(self) -> Busy:
        self._machine, self._own = machine_seconds(), own_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = (machine_seconds() - self._machine) - (own_seconds() - self._own)


def program(argv: list[str], comm: str) -> str:
    """A readable name for what a process runs: the Dagster part, the module of a
    `python -m`, else the script's or the executable's name."""
    words = [a for a in argv if a]
    text = " ".join(words)
    if comm == "meltano":  # a warm `meltano run`: a fork of the run worker, renamed
        return "meltano"
    if "multiprocessing" in text:  # its preload names the program that launches runs
        return "dagster run worker"  # and the fork server they are forked from
    if "orchestrate.fleet" in text or "fleet.sh" in text:
        return "fleet.sh (Dagster's daemon, the backfill, the wait)"
    if "dagster-daemon" in text:
        return "dagster-daemon"
    if "dagster" in text and " api grpc" in text:
        return "dagster code server"
    if "execute_run" in text:
        return "dagster run worker"
    if "dagster" in text and " job backfill" in text:
        return "dagster backfill (CLI)"
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    names = [os.path.basename(w) for w in words[:2]]
    if names and names[0].startswith("python") and len(names) > 1 and not names[1].startswith("-"):
        return names[1]
    if comm.startswith("postgres") or (names and names[0] == "postgres"):
        return "postgres"
    return names[0] if names else comm


class ProgramCpu:
    """Samples every process's CPU every `interval` seconds; `by_program()` sums the last
    reading of each process by program. A process that exits loses at most its last
    interval, so this is a profile, not an account (`Busy` is the account)."""

    def __init__(self, interval: float = 0.05, exclude: int | None = None) -> None:
        self.interval, self.exclude = interval, exclude or os.getpid()
        self._seen: dict[tuple[int, str], tuple[str, float]] = {}
        self._names: dict[tuple[tuple[int, str], str], str] = {}
        self._before: dict[tuple[int, str], float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> dict[tuple[int, str], tuple[str, float]]:
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.exclude:
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    raw = handle.read()
                comm = raw[raw.index("(") + 1:raw.rindex(")")]
                fields = raw.rsplit(")", 1)[1].split()
                key = (int(entry), fields[19])  # pid and start time: a reused pid is another
                # a process is named again when its comm changes: a fork that then execs
                # (Meltano starting the tap) is first seen under its parent's name
                if (key, comm) not in self._names:
                    with open(f"/proc/{entry}/cmdline", "rb") as handle:
                        argv = handle.read().decode(errors="replace").split("\0")
                    self._names[(key, comm)] = program(argv, comm)
                out[key] = (self._names[(key, comm)],
                            (int(fields[11]) + int(fields[12])) / TICK)
            except (OSError, IndexError, ValueError):
                continue
        return out

    def _run(self) -> None:
        while not self._done.is_set():
            self._seen.update(self._read())
            self._done.wait(self.interval)

    def __enter__(self) -> ProgramCpu:
        self._before = {key: cpu for key, (_, cpu) in self._read().items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._seen.update(self._read())

    def by_program(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for key, (name, cpu) in self._seen.items():
            totals[name] = totals.get(name, 0.0) + cpu - self._before.get(key, 0.0)
        return dict(sorted(totals.items(), key=lambda item: -item[1]))
