"""Installable outside this repository: the built wheel (and the sdist) carry the schemas,
and a fresh venv with the wheel, or with a Git URL of this repository, runs `--about`,
`--discover` and a sync against the fake API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import OUTPUTS, FakeServer, config_for, parse_lines
from tests.pg import ROOT

pytestmark = pytest.mark.e2e
SCHEMAS = sorted(p.name for p in (ROOT / "tap_analytics" / "schemas").glob("*.json"))


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kwargs)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 0, f"{argv[:4]}:\n{proc.stderr[-3000:]}"
    return proc


def fresh_venv(path: Path, requirement: str) -> Path:
    run([sys.executable, "-m", "venv", str(path)])
    run([str(path / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
         requirement])
    return path / "bin" / "tap-analytics"


def use_installed(executable: Path, server: FakeServer, tmp: Path) -> None:
    about = json.loads(run([str(executable), "--about", "--format", "json"]).stdout)
    assert about["name"] == "tap-analytics"
    config = tmp / "config.json"
    config.write_text(json.dumps(config_for(server, page_size=50)))
    # outside the checkout: nothing may come from the repository's own files
    catalog = json.loads(run([str(executable), "--config", str(config), "--discover"],
                             cwd=tmp).stdout)
    assert len(catalog["streams"]) == 15
    out = parse_lines(run([str(executable), "--config", str(config)], cwd=tmp).stdout)
    people = {m["record"]["id"] for m in out if m["type"] == "RECORD"
              and m["stream"] == "peoples"}
    assert people == server.ids()["peoples"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist),
         str(ROOT)], env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    wheel = next(dist.glob("tap_analytics-*.whl"))
    sdist = next(dist.glob("tap_analytics-*.tar.gz"))
    return wheel, sdist


def test_wheel_and_sdist_carry_the_schemas(built: tuple[Path, Path]) -> None:
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as archive:
        names = {Path(n).name for n in archive.namelist() if "/schemas/" in n}
    assert sorted(names) == SCHEMAS
    with tarfile.open(sdist) as archive:
        names = {Path(n).name for n in archive.getnames() if "/schemas/" in n}
    assert set(SCHEMAS) <= names


def test_the_wheel_installs_and_syncs_in_a_fresh_venv(built: tuple[Path, Path],
                                                      server: FakeServer,
                                                      tmp_path: Path) -> None:
    executable = fresh_venv(tmp_path / "venv", str(built[0]))
    use_installed(executable, server, tmp_path)


def test_a_git_url_installs_the_same(server: FakeServer, tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a Git checkout")
    executable = fresh_venv(tmp_path / "venv", f"git+file://{ROOT}")
    use_installed(executable, server, tmp_path)
