"""Peak resident memory of a process and everything below it (tap, target, Meltano, ...)."""

from __future__ import annotations

import os
import threading

PAGE = os.sysconf("SC_PAGE_SIZE")


def _pss(pid: str) -> int:
    """Proportional set size: a page shared by n processes (a fork's) counts 1/n in each."""
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_rss(root: int, pss: bool = False) -> tuple[int, dict[str, int]]:
    """Resident bytes of `root` and every process below it, read from /proc, in all and
    by program (tap-analytics, target-postgres, meltano, ...); with `pss`, shared pages
    count once in all (forked processes share most of theirs)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            if pss:
                rss[int(entry)] = _pss(entry)
            else:
                with open(f"/proc/{entry}/statm") as handle:
                    rss[int(entry)] = int(handle.read().split()[1]) * PAGE
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            parents[int(entry)] = int(fields[1])
            names[int(entry)] = _program(argv)
        except (OSError, IndexError, ValueError):
            continue
    total, by_name, todo = 0, {}, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        name = names.get(pid, "?")
        by_name[name] = by_name.get(name, 0) + rss.get(pid, 0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total, by_name


def _program(argv: list[bytes]) -> str:
    """The program a process runs: a script's name rather than its interpreter's."""
    words = [os.path.basename(a.decode(errors="replace")) for a in argv if a]
    if len(words) > 1 and words[0].startswith("python") and not words[1].startswith("-"):
        return words[1]
    return words[0] if words else "?"


class PeakRss:
    """`with PeakRss(pid) as peak:` samples the tree every 0.2 s; after it, `peak.bytes`
    (the whole tree) and `peak.by_name` (each program's own peak)."""

    def __init__(self, pid: int, interval: float = 0.2, pss: bool = False) -> None:
        self.pid, self.interval, self.bytes, self.pss = pid, interval, 0, pss
        self.by_name: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            total, by_name = tree_rss(self.pid, self.pss)
            self.bytes = max(self.bytes, total)
            for name, size in by_name.items():
                self.by_name[name] = max(self.by_name.get(name, 0), size)
            self._done.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
