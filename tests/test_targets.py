"""Any Singer target: the tap piped (plain Singer) into real third-party targets, each in
its own venv, against a fake API whose undocumented fields and types drift from a seed.

The seeds are drawn afresh each run (set DRIFT_SEEDS=1,2,3 to repeat a run): every record
must land, and every value the API served must be kept, in each target.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import typing as t
from pathlib import Path

import pytest

from tap_analytics.streams import BUILTIN_STREAMS
from tests.helpers import OUTPUTS, FakeServer, config_for, start_server, tap_command
from tests.landed import missing_values
from tests.targets import install_targets, pipe, read_csv, read_duckdb, read_jsonl

pytestmark = pytest.mark.e2e
KEYS = {cls.resource.name: cls.resource.primary_key for cls in BUILTIN_STREAMS}
SCALE = {"small": 150, "full": 1500}[os.environ.get("TEST_SCALE", "small")]
SEED_COUNT = {"small": 3, "full": 8}[os.environ.get("TEST_SCALE", "small")]


def drift_seeds() -> list[int]:
    given = os.environ.get("DRIFT_SEEDS")
    if given:
        return [int(s) for s in given.split(",")]
    return [random.SystemRandom().randrange(10**6) for _ in range(SEED_COUNT)]


SEEDS = drift_seeds()


@pytest.fixture(scope="session")
def targets() -> dict[str, Path]:
    return install_targets()


@pytest.fixture
def drifting(request: pytest.FixtureRequest) -> t.Iterator[FakeServer]:
    fake = start_server(scale=SCALE, segments=4, drift_seed=request.param)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def served(server: FakeServer) -> dict[str, list[dict]]:
    import requests

    records = requests.get(f"{server.url}/_admin/records", timeout=30).json()
    return {name: rows for name, rows in records.items() if name in KEYS}


def assert_all_kept(server: FakeServer, landed: dict[str, list[dict]], where: str) -> None:
    problems = missing_values(served(server), landed, KEYS)
    seed = server.api.drift_seed
    assert not problems, (f"{where}, DRIFT_SEEDS={seed}: {len(problems)} problems, first: "
                          + "; ".join(problems[:5]))


@pytest.mark.parametrize("drifting", SEEDS, indirect=True, ids=[f"seed={s}" for s in SEEDS])
def test_every_target_gets_every_record_and_value(drifting: FakeServer, targets: dict,
                                                  tmp_path: Path) -> None:
    server = drifting
    (tmp_path / "tap.json").write_text(json.dumps(config_for(server, page_size=40)))
    tap = [*tap_command(), "--config", str(tmp_path / "tap.json")]

    # --discover samples the API: fields that no file of the project names are in it
    discovery = subprocess.run([*tap, "--discover"], capture_output=True, text=True,
                               timeout=300, check=True)
    OUTPUTS.append(discovery.stderr)
    catalog = json.loads(discovery.stdout)
    (tmp_path / "catalog.json").write_text(discovery.stdout)
    seeded = {name: server.api.data.drift.specs(name, []) for name in KEYS}
    for entry in catalog["streams"]:
        properties = entry["schema"]["properties"]
        early = [s.name for s in seeded[entry["tap_stream_id"]] if not s.late]
        assert set(early) <= set(properties), entry["tap_stream_id"]
    synced = [*tap, "--catalog", str(tmp_path / "catalog.json")]

    targets_config = {  # target: (its config, how to read what landed)
        "target-jsonl": ({"destination_path": str(tmp_path / "jsonl"),
                          "do_timestamp_file": False}, lambda: read_jsonl(tmp_path / "jsonl")),
        "target-csv": ({"output_path": str(tmp_path / "csv")},
                       lambda: read_csv(tmp_path / "csv")),
        "target-duckdb": ({"path": str(tmp_path / "warehouse.duckdb"),
                           "default_target_schema": "analytics"},
                          lambda: read_duckdb(tmp_path / "warehouse.duckdb", "analytics")),
    }
    for name, (target_config, landed) in targets_config.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(target_config))
        result, tap_err = pipe(synced, [str(targets[name]), "--config",
                                        str(tmp_path / f"{name}.json")], tmp_path)
        OUTPUTS.extend([tap_err, result.stderr])
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
        assert_all_kept(server, landed(), name)


# singer-check-tap as released, with its one race mended: it reads the tap's output on a
# thread and takes that thread's summary as soon as the tap has exited, without joining it;
# when lines are still in the pipe (more so on a busy machine) the summary is not made yet
# and it crashes ("'NoneType' object has no attribute 'num_messages'"). Here the summary
# waits for its thread; every check the tool makes on the output is its own, unchanged.
CHECK_TAP_JOINED = """
import sys
from singertools import check_tap


class JoinedReader(check_tap.StdoutReader):
    @property
    def summary(self):
        if self.is_alive():
            self.join()
        return self._summary

    @summary.setter
    def summary(self, value):
        self._summary = value


check_tap.StdoutReader = JoinedReader
sys.exit(check_tap.main())
"""


@pytest.mark.parametrize("drifting", SEEDS, indirect=True, ids=[f"seed={s}" for s in SEEDS])
def test_singer_check_tap_finds_the_output_valid(drifting: FakeServer, targets: dict,
                                                 tmp_path: Path) -> None:
    """singer-tools runs the tap twice (the second time with the state of the first) and
    validates every message against the schema in force."""
    (tmp_path / "tap.json").write_text(json.dumps(config_for(drifting, page_size=40)))
    executable = Path(tap_command()[0]).parent / "tap-analytics"
    python = Path(targets["singer-check-tap"]).parent / "python"
    result = subprocess.run([str(python), "-c", CHECK_TAP_JOINED, "--tap", str(executable),
                             "--config", str(tmp_path / "tap.json")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    OUTPUTS.extend([result.stdout, result.stderr])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("The output is valid.") == 2
