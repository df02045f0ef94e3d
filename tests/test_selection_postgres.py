"""Each stream alone, and each child without its parent, through `meltano run tap-analytics
target-postgres` (selected with Meltano's `select_filter`, as `meltano select` or the
fleet's subset do): only that table is created, holding exactly the API's rows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import OUTPUTS, FakeServer
from tests.pg import MELTANO, ROOT, Cluster
from tests.test_postgres import meltano_env, table_keys
from tests.test_selection import DECLARED, DECLARED_KEYS, SERVED_AS, STREAMS

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


def tables_in(cluster: Cluster, schema: str) -> set[str]:
    with cluster.connect() as con:
        return {r[0] for r in con.execute("select table_name from information_schema.tables "
                                          "where table_schema = %s", (schema,)).fetchall()}


def run_alone(env: dict, stream: str) -> None:
    proc = subprocess.run([str(MELTANO), "run", "--state-id-suffix", stream, "tap-analytics",
                           "target-postgres"], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "TAP_ANALYTICS__SELECT_FILTER": json.dumps([stream])},
                          timeout=600)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    lines = [line for line in proc.stderr.splitlines() if "METRIC" not in line]
    assert proc.returncode == 0, f"{stream} alone:\n" + "\n".join(lines[-30:])


@pytest.mark.parametrize("stream", [*STREAMS, "segment_members", "my_members"])
def test_a_stream_alone_lands_exactly_in_postgres(server: FakeServer, cluster: Cluster,
                                                  tmp_path: Path, stream: str) -> None:
    schema = f"alone_{stream}"
    env = meltano_env(server, cluster, schema, tmp_path)
    if stream not in STREAMS:
        # declared: discovered, not the shipped catalog, so that `select` applies to it
        env.update(TAP_ANALYTICS_RESOURCES=json.dumps(DECLARED), TAP_ANALYTICS__CATALOG="")
    run_alone(env, stream)
    assert tables_in(cluster, schema) == {stream}
    if stream in STREAMS:
        keys = table_keys(cluster, schema, stream)
    else:
        with cluster.connect() as con:
            keys = con.execute('select {} from "{}"."{}"'.format(
                ", ".join(DECLARED_KEYS[stream]), schema, stream)).fetchall()
    assert len(keys) == len(set(keys)), f"{stream}: duplicate rows"
    assert set(keys) == server.ids()[SERVED_AS.get(stream, stream)], stream
