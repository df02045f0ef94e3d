"""Real third-party Singer targets, each in its own venv made by the tests, and their output."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

from tests.pg import ROOT

VENVS = ROOT / ".venv-targets"
# name: (pip requirements, executable)
TARGETS: dict[str, tuple[tuple[str, ...], str]] = {
    "target-jsonl": (("target-jsonl==0.1.4",), "target-jsonl"),
    "target-csv": (("meltanolabs-target-csv==0.5.0",), "target-csv"),
    # duckdb 1.1+ makes target-duckdb 0.8.0 drop the first row of a batch (see meltano.yml)
    "target-duckdb": (("target-duckdb==0.8.0", "duckdb==1.0.0"), "target-duckdb"),
    "singer-check-tap": (("singer-tools==0.4.1",), "singer-check-tap"),
}


def install_targets(names: t.Iterable[str] = TARGETS) -> dict[str, Path]:
    """Each target's executable, its venv created and filled once (all at the same time)."""
    jobs = {}
    for name in names:
        requirements = TARGETS[name][0]
        venv = VENVS / name
        stamp = venv / (".stamp-" + "-".join(requirements).replace("=", "_"))
        if not stamp.exists():
            script = (f'"{sys.executable}" -m venv --clear "{venv}" && '
                      f'"{venv}/bin/pip" install -q --disable-pip-version-check '
                      + " ".join(f'"{r}"' for r in requirements) + f' && touch "{stamp}"')
            jobs[name] = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)
    for name, job in jobs.items():
        output, _ = job.communicate(timeout=900)
        if job.returncode != 0:
            raise RuntimeError(f"installing {name} failed:\n{output[-3000:]}")
    return {name: VENVS / name / "bin" / TARGETS[name][1] for name in names}


def pipe(tap_argv: list[str], target_argv: list[str], cwd: Path,
         env: dict | None = None) -> tuple[subprocess.CompletedProcess, str]:
    """`tap | target` through a real pipe; the target's result and the tap's stderr."""
    with open(cwd / "tap.err", "wb") as tap_err:
        tap = subprocess.Popen(tap_argv, stdout=subprocess.PIPE, stderr=tap_err, cwd=cwd,
                               env={**os.environ, **(env or {})})
        target = subprocess.run(target_argv, stdin=tap.stdout, capture_output=True, text=True,
                                cwd=cwd, timeout=600)
        tap.stdout.close()
        tap.wait(timeout=120)
    tap_stderr = (cwd / "tap.err").read_text(errors="replace")
    assert tap.returncode == 0, tap_stderr[-3000:]
    return target, tap_stderr


def read_jsonl(folder: Path) -> dict[str, list[dict]]:
    """target-jsonl: one file per stream, records in the order written (last one wins)."""
    out: dict[str, list[dict]] = {}
    for path in folder.glob("*.jsonl"):
        out[path.stem] = [json.loads(line) for line in path.read_text().splitlines() if line]
    return out


def read_csv(folder: Path) -> dict[str, list[dict]]:
    """target-csv: one file per stream; an empty cell is a null."""
    out: dict[str, list[dict]] = {}
    for path in folder.glob("*.csv"):
        with open(path, newline="", encoding="utf-8") as handle:
            out[path.stem] = [{k: (v if v != "" else None) for k, v in row.items()}
                              for row in csv.DictReader(handle)]
    return out


def read_duckdb(path: Path, schema: str) -> dict[str, list[dict]]:
    import duckdb

    out: dict[str, list[dict]] = {}
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = ?",
            [schema]).fetchall()]
        for table in tables:
            result = con.execute(f'select * from "{schema}"."{table}"')
            names = [d[0] for d in result.description]
            out[table] = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    return out
