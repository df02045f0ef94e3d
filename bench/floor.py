"""The floor under `meltano run ... target-postgres`: the same run with a tap that costs
nothing, a stand-in that replays what the real tap wrote. What is left is Meltano's and
target-postgres' own time, which no change to the tap can remove.

Two floors: the recorded RECORD messages as they are, and the same records as Singer BATCH
files (gzipped JSONL, one per stream and table version), which target-postgres loads without
its per-record path. The batch files carry what that path would have added and its batch
path does not: `_sdc_table_version` (its hard delete after ACTIVATE_VERSION removes rows
without one) and `_sdc_extracted_at`; date-times are in UTC as the shipped tap writes them.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAP = ROOT / ".meltano" / "extractors" / "tap-analytics" / "venv" / "bin" / "tap-analytics"
REPLAY = """#!/bin/sh
for arg in "$@"; do [ "$arg" = "--about" ] && exit 0; done
exec cat "$TAP_ANALYTICS_REPLAY"
"""


def record(url: str, out: Path) -> Path:
    """One run of the real tap (the shipped catalog and settings) written to a file."""
    config = out.with_suffix(".config.json")
    config.write_text(json.dumps({"base_url": url, "api_key": "test-key",
                                  "discovery_sampling": False}))
    with out.open("wb") as sink:
        subprocess.run([str(TAP), "--config", str(config), "--catalog",
                        str(ROOT / "catalog" / "tap-analytics.json")], stdout=sink,
                       stderr=subprocess.DEVNULL, check=True)
    return out


def as_batches(recorded: Path, folder: Path) -> Path:
    """The recorded run with each stream's records moved to one BATCH file per table
    version, written where the records ended (before the ACTIVATE_VERSION closing them)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "batches.singer"
    pending: dict[str, list[dict]] = {}

    def flush(stream: str, lines: list[str]) -> None:
        rows = pending.pop(stream, [])
        if rows:
            path = folder / f"{stream}-{len(lines)}.jsonl.gz"
            with gzip.open(path, "wt", compresslevel=1) as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
            lines.append(json.dumps({"type": "BATCH", "stream": stream, "manifest": [
                path.as_uri()], "encoding": {"format": "jsonl", "compression": "gzip"}}))

    lines: list[str] = []
    for line in recorded.read_text().splitlines():
        message = json.loads(line)
        kind, stream = message["type"], message.get("stream")
        if kind == "RECORD":
            row = message["record"]
            row["_sdc_table_version"] = message.get("version")
            row["_sdc_extracted_at"] = message.get("time_extracted")
            pending.setdefault(stream, []).append(row)
            continue
        if kind == "ACTIVATE_VERSION":
            flush(stream, lines)
        lines.append(line)
    for stream in list(pending):
        flush(stream, lines)
    out.write_text("\n".join(lines) + "\n")
    return out


def system_dir(folder: Path) -> Path:
    """A `.meltano` whose tap-analytics is the replaying stand-in (the loaders are the real
    ones): `meltano run tap-analytics target-postgres` runs as it does, the tap aside."""
    bin_dir = folder / "extractors" / "tap-analytics" / "venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "tap-analytics"
    script.write_text(REPLAY)
    script.chmod(0o755)
    loaders = folder / "loaders"
    if not loaders.exists():
        loaders.symlink_to(ROOT / ".meltano" / "loaders")
    return folder


def floor_env(folder: Path, replay: Path) -> dict[str, str]:
    return {"MELTANO_SYS_DIR_ROOT": str(system_dir(folder)),
            "TAP_ANALYTICS_REPLAY": str(replay)}
