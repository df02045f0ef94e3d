"""The README's demo command works: two Meltano runs into DuckDB, the second incremental."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import OUTPUTS
from tests.pg import MELTANO, ROOT

pytestmark = pytest.mark.e2e


def test_demo_prints_both_runs_and_moves_only_changes(tmp_path: Path) -> None:
    if not MELTANO.exists():
        if os.environ.get("CI"):
            pytest.fail("Meltano is not installed (scripts/setup.sh)")
        pytest.skip("Meltano is not installed (run scripts/setup.sh)")
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db"}
    proc = subprocess.run([sys.executable, "-m", "scripts.demo", "--scale", "200",
                           "--output", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1].isdigit() and parts[2].isdigit():
            rows[parts[0]] = tuple(int(p) for p in parts[1:4])
    assert len(rows) == 15
    for name in ("conversations", "contacts", "conversation_parts", "peoples"):
        before, fetched, after = rows[name]
        assert after == before + 10  # 10 new records merged, 25 updated in place
        assert 35 <= fetched <= 40  # changes, plus the records at the old bookmark
    assert rows["segment_people"][0] == rows["segment_people"][2]
    assert (tmp_path / "warehouse.duckdb").exists()
