"""Helpers shared by the test modules: the fake API, running the tap, reading its output."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import typing as t
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import requests
from jsonschema import Draft7Validator, FormatChecker

from fake_api.server import FakeAPI, serve

# Every output a test produces is collected here; the secret guard (conftest) scans it.
OUTPUTS: list[str] = []
SECRETS: set[str] = set()


@dataclass
class FakeServer:
    api: FakeAPI
    url: str
    server: t.Any

    def admin(self, path: str, body: dict | None = None) -> t.Any:
        response = requests.post(f"{self.url}/_admin/{path}", json=body or {}, timeout=10)
        response.raise_for_status()
        return response.json()

    def faults(self, *rules: dict) -> None:
        self.admin("faults", {"rules": list(rules)})

    def ids(self) -> dict[str, set]:
        raw = requests.get(f"{self.url}/_admin/ids", timeout=10).json()
        return {name: {tuple(k) if isinstance(k, list) else k for k in keys}
                for name, keys in raw.items()}

    def requests(self) -> list[dict]:
        return requests.get(f"{self.url}/_admin/requests", timeout=10).json()

    def secrets(self) -> set[str]:
        return {self.api.api_key, self.api.client_secret, *self.api.tokens}


def start_server(**kwargs: t.Any) -> FakeServer:
    api = FakeAPI(**kwargs)
    server = serve(api)
    SECRETS.update({api.api_key, api.client_secret})
    return FakeServer(api, f"http://127.0.0.1:{server.server_port}", server)


def config_for(server: FakeServer, **overrides: t.Any) -> dict:
    config = {"base_url": server.url, "api_key": server.api.api_key, "backoff_factor": 0,
              "request_timeout": 5}
    config.update(overrides)
    return config


def oauth_config(server: FakeServer, **overrides: t.Any) -> dict:
    config = config_for(server, auth_type="oauth2", client_id=server.api.client_id,
                        client_secret=server.api.client_secret)
    config.pop("api_key")
    config.update(overrides)
    return config


@dataclass
class Output:
    messages: list[dict] = field(default_factory=list)
    stderr: str = ""
    returncode: int = 0

    @property
    def records(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = defaultdict(list)
        for m in self.messages:
            if m["type"] == "RECORD":
                out[m["stream"]].append(m["record"])
        return out

    def keys(self, stream: str, key: t.Sequence[str] = ("id",)) -> list:
        rows = self.records.get(stream, [])
        if len(key) == 1:
            return [r[key[0]] for r in rows]
        return [tuple(r[k] for k in key) for r in rows]

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def last_state(self) -> dict:
        states = self.states
        return states[-1] if states else {}


def parse_lines(text: str) -> list[dict]:
    """Singer messages, each RECORD checked against its stream's SCHEMA in force."""
    messages = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert_records_match_schemas(messages)
    return messages


STRICT = FormatChecker()
assert not STRICT.conforms("2026-13-01T00:00:00Z", "date-time"), "rfc3339-validator missing"


def assert_records_match_schemas(messages: t.Iterable[dict]) -> int:
    """Validate every RECORD the way a strict target does (JSON Schema, formats checked)
    against the latest SCHEMA of its stream; return how many records were checked."""
    validators: dict[str, Draft7Validator] = {}
    checked = 0
    for number, message in enumerate(messages, 1):
        if message["type"] == "SCHEMA":
            validators[message["stream"]] = Draft7Validator(message["schema"],
                                                            format_checker=STRICT)
        elif message["type"] == "RECORD":
            validator = validators.get(message["stream"])
            assert validator is not None, f"message {number}: RECORD before its SCHEMA"
            error = next(validator.iter_errors(message["record"]), None)
            assert error is None, (f"message {number} ({message['stream']}): "
                                   f"{error.message} at {list(error.absolute_path)}")
            checked += 1
    return checked


def discovered_catalog(config: dict) -> dict:
    """What `--discover` gives: the declared fields plus those the API's first pages show."""
    from tap_analytics.tap import TapAnalytics

    tap = TapAnalytics(config=config, setup_mapper=False)
    tap.sample_api = True
    return tap.catalog_dict


def catalog_selecting(config: dict, streams: t.Iterable[str], *, discovered: bool = False
                      ) -> dict:
    """A catalog with only `streams` selected: the declared one, or what `--discover` says."""
    from tap_analytics.tap import TapAnalytics

    wanted = set(streams)
    catalog = (discovered_catalog(config) if discovered
               else TapAnalytics(config=config, setup_mapper=False).catalog_dict)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in wanted
    return catalog


def sync(config: dict, streams: t.Iterable[str] | None = None, state: dict | None = None,
         prepare: t.Callable[[t.Any], None] | None = None) -> Output:
    """Run a sync in this process and return its Singer messages; `prepare(tap)` may fake
    a clock first."""
    from tap_analytics.tap import TapAnalytics

    catalog = catalog_selecting(config, streams) if streams is not None else None
    buffer = io.BytesIO()
    wrapper = io.TextIOWrapper(buffer, encoding="utf-8")
    with contextlib.redirect_stdout(wrapper):
        tap = TapAnalytics(config=config, catalog=catalog, state=state or {})
        if prepare is not None:
            prepare(tap)
        tap.sync_all()
        wrapper.flush()
    text = buffer.getvalue().decode()
    OUTPUTS.append(text)
    return Output(parse_lines(text))


def tap_command() -> list[str]:
    return [sys.executable, "-m", "tap_analytics"]


def run_cli(config: dict, *args: str, state: dict | None = None, catalog: dict | None = None,
            timeout: float = 120, env: dict | None = None) -> Output:
    """Run the real `tap-analytics` command line; collect stdout and stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, value in (("config", config), ("state", state), ("catalog", catalog)):
            if value is not None:
                paths[name] = os.path.join(tmp, f"{name}.json")
                with open(paths[name], "w") as handle:
                    json.dump(value, handle)
        argv = [*tap_command(), "--config", paths["config"]]
        for name in ("state", "catalog"):
            if name in paths:
                argv += [f"--{name}", paths[name]]
        argv += list(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    whole = "--discover" in args or "--about" in args
    if whole:
        messages = [json.loads(proc.stdout)] if proc.returncode == 0 else []
    else:
        messages = parse_lines(proc.stdout)
    return Output(messages, proc.stderr, proc.returncode)


def quiet_sdk_logs() -> None:
    logging.getLogger("singer_sdk.metrics").setLevel(logging.WARNING)


def project_copy(copy: Path) -> Path:
    """The project as a fresh container has it: its tracked files and installed plugins
    (linked), no `.meltano/run`, no local system database. Runs in it must not install
    (`meltano run --no-install`): the editable tap's install path differs, and a reinstall
    would point the shared tap at the copy (`installed_tap_root` tells)."""
    root = Path(__file__).resolve().parent.parent
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (root / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, copy / name)
    (copy / ".meltano").mkdir()
    for kind in ("extractors", "loaders"):
        (copy / ".meltano" / kind).symlink_to(root / ".meltano" / kind)
    return copy


def installed_tap_root() -> Path:
    """The project the tap Meltano installed imports from (its install is editable)."""
    python = Path(__file__).resolve().parent.parent / ".meltano" / "extractors" / \
        "tap-analytics" / "venv" / "bin" / "python"
    printed = subprocess.run([str(python), "-I", "-c",  # -I: not the working directory's
                              "import tap_analytics; print(tap_analytics.__file__)"],
                             capture_output=True, text=True, check=True, cwd="/").stdout
    return Path(printed.strip()).parent.parent
