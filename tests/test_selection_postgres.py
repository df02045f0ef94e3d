"""Each stream alone, and each child without its parent, through `meltano run tap-analytics
target-postgres` (selected with Meltano's `select_filter`, as `meltano select` or the
fleet's subset do): only that table is created, holding exactly the API's rows."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrate.run_tenant import private_system_dir
from tests.helpers import OUTPUTS, FakeServer
from tests.pg import MELTANO, ROOT, Cluster
from tests.test_postgres import meltano_env, table_keys
from tests.test_selection import DECLARED, DECLARED_KEYS, SERVED_AS, STREAMS

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]
ALONE = [*STREAMS, "segment_members", "my_members"]


def tables_in(cluster: Cluster, schema: str) -> set[str]:
    with cluster.connect() as con:
        return {r[0] for r in con.execute("select table_name from information_schema.tables "
                                          "where table_schema = %s", (schema,)).fetchall()}


def run_alone(server: FakeServer, cluster: Cluster, tmp_path: Path, stream: str) -> str | None:
    """One `meltano run` of `stream` alone into a schema of its own: what went wrong, or
    None when exactly that table landed with exactly the API's rows."""
    schema = f"alone_{stream}"
    env = meltano_env(server, cluster, schema, tmp_path)
    env.update(MELTANO_DATABASE_URI=f"sqlite:///{tmp_path}/meltano-{stream}.db",
               TAP_ANALYTICS__SELECT_FILTER=json.dumps([stream]))
    if stream not in STREAMS:
        # declared: discovered, not the shipped catalog, so that `select` applies to it
        env.update(TAP_ANALYTICS_RESOURCES=json.dumps(DECLARED), TAP_ANALYTICS__CATALOG="")
    with private_system_dir(ROOT) as system_dir:  # runs side by side: a `.meltano/run` each
        env["MELTANO_SYS_DIR_ROOT"] = str(system_dir)
        proc = subprocess.run([str(MELTANO), "run", "--no-install", "tap-analytics",
                               "target-postgres"], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=600)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if "METRIC" not in line]
        return f"{stream} alone failed:\n" + "\n".join(lines[-30:])
    if tables_in(cluster, schema) != {stream}:
        return f"{stream} alone made tables {sorted(tables_in(cluster, schema))}"
    if stream in STREAMS:
        keys = table_keys(cluster, schema, stream)
    else:
        with cluster.connect() as con:
            keys = con.execute('select {} from "{}"."{}"'.format(
                ", ".join(DECLARED_KEYS[stream]), schema, stream)).fetchall()
    if len(keys) != len(set(keys)):
        return f"{stream} alone: duplicate rows"
    if set(keys) != server.ids()[SERVED_AS.get(stream, stream)]:
        return f"{stream} alone: rows differ from the API's"
    return None


def test_each_stream_alone_lands_exactly_in_postgres(server: FakeServer, cluster: Cluster,
                                                     tmp_path: Path) -> None:
    """The 15 streams and two declared children, each alone, as many at once as there are
    cores (each run has a schema and a Meltano state of its own)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        problems = [p for p in pool.map(lambda s: run_alone(server, cluster, tmp_path, s),
                                        ALONE) if p]
    assert not problems, "\n\n".join(problems)
