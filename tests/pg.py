"""A throwaway PostgreSQL cluster on a free loopback port, from Debian's initdb/pg_ctl."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
# Dagster's venv: scripts/dagster_next.sh points it at one with the next Dagster release
DAGSTER_BIN = ROOT / (os.environ.get("TAP_ANALYTICS_DAGSTER_VENV") or ".venv-dagster") / "bin"
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
TARGET = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    directory: str
    port: int
    user: str = "tester"
    database: str = "postgres"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                               dbname=self.database, autocommit=True)


def _as_owner(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def start_cluster() -> Cluster:
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise FileNotFoundError("initdb/pg_ctl not found (apt-get install postgresql)")
    directory = tempfile.mkdtemp(prefix="tap-analytics-pg-")
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = os.path.join(directory, "data")
    subprocess.run(_as_owner([initdb, "-D", data, "-U", "tester", "--auth=trust",
                              "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    port = free_port()
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_owner([pg_ctl, "-D", data, "-o", options, "-l",
                              os.path.join(directory, "log"), "-w", "start"]),
                   check=True, capture_output=True)
    cluster = Cluster(directory, port)
    deadline = time.monotonic() + 30
    while True:  # pg_ctl -w already waits; poll until a connection succeeds
        try:
            cluster.connect().close()
            return cluster
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop_cluster(cluster: Cluster) -> None:
    pg_ctl = find_bin("pg_ctl")
    subprocess.run(_as_owner([pg_ctl, "-D", os.path.join(cluster.directory, "data"),
                              "-m", "immediate", "stop"]), capture_output=True)
    shutil.rmtree(cluster.directory, ignore_errors=True)


def restart_cluster(cluster: Cluster) -> None:
    """What a failover or a minor-version upgrade does: every connection is cut, the server
    is back a moment later (pg_ctl waits for it)."""
    options = (f"-p {cluster.port} -k {cluster.directory} -c listen_addresses=127.0.0.1 "
               "-c fsync=off")
    subprocess.run(_as_owner([find_bin("pg_ctl"), "-D", os.path.join(cluster.directory, "data"),
                              "-o", options, "-l", os.path.join(cluster.directory, "log"),
                              "-m", "fast", "-w", "restart"]),
                   check=True, capture_output=True)
