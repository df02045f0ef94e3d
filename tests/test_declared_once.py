"""Settings are declared once (tap_analytics/settings.py): `--about`, `meltano.yml`, the plugin
definition and the README's settings table all say the same; numbers work in every form."""

from __future__ import annotations

import decimal
import re

import pytest
import yaml

from scripts.plugin_definition import CATALOG, DEFINITION, declared_catalog, definition, render
from tap_analytics.settings import BY_NAME, SETTINGS, parse_settings
from tap_analytics.streams import BUILTIN_STREAMS
from tests.helpers import config_for, run_cli
from tests.pg import ROOT

BUILTIN = [cls.resource.name for cls in BUILTIN_STREAMS]


def test_meltano_yml_declares_what_the_plugin_definition_declares() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    extractor = project["plugins"]["extractors"][0]
    expected = definition()
    for key in ("name", "namespace", "executable", "settings_group_validation", "settings"):
        assert extractor[key] == expected[key], key
    assert sorted(extractor["capabilities"]) == sorted(expected["capabilities"])
    kinds = {s["name"]: s["kind"] for s in extractor["settings"]}
    # text for Meltano: its decimal settings from the environment crash Meltano 4.4.1
    assert kinds["backoff_factor"] == kinds["request_timeout"] == "string"
    assert kinds["page_size"] == kinds["max_concurrency"] == "integer"


def test_plugin_definition_file_is_current() -> None:
    assert DEFINITION.read_text() == render(), "run: python -m scripts.plugin_definition"


def test_shipped_catalog_is_the_declared_one() -> None:
    """`meltano.yml` hands Meltano this catalog, so a `meltano run` starts no discovery;
    it must be what `--discover` says without credentials."""
    assert CATALOG.read_text() == declared_catalog(), "run: python -m scripts.plugin_definition"
    extractor = yaml.safe_load((ROOT / "meltano.yml").read_text())["plugins"]["extractors"][0]
    assert extractor["catalog"] == "catalog/tap-analytics.json"


def test_about_lists_every_setting_with_its_limits() -> None:
    out = run_cli({}, "--about", "--format", "json")
    properties = out.messages[0]["settings"]["properties"]
    for setting in SETTINGS:
        prop = properties[setting.name]
        assert prop.get("default") == setting.default, setting.name
        assert prop.get("enum") == (list(setting.choices) or None), setting.name
        low = prop.get("exclusiveMinimum", prop.get("minimum"))
        assert low == setting.minimum and prop.get("maximum") == setting.maximum, setting.name
        assert prop.get("secret", False) == setting.secret, setting.name


def test_readme_settings_table_matches() -> None:
    text = (ROOT / "README.md").read_text()
    table = text.split("## Settings", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1]
    assert list(rows) == [s.name for s in SETTINGS]
    for name, default in rows.items():
        declared = BY_NAME[name].default
        shown = "" if declared is None else str(declared).lower()
        assert re.sub(r"[`*]", "", default) == shown, name


@pytest.mark.parametrize("value", [0.5, decimal.Decimal("0.5"), "0.5", " 0.5 "])
def test_fractional_numbers_in_every_form(value) -> None:
    settings = parse_settings({"api_key": "k-123456", "backoff_factor": value,
                               "request_timeout": value, "max_requests_per_second": value},
                              BUILTIN)
    assert settings.backoff_factor == settings.request_timeout == 0.5
    assert settings.max_requests_per_second == 0.5


@pytest.mark.parametrize("value", [5, 5.0, decimal.Decimal("5"), "5"])
def test_integers_in_every_form(value) -> None:
    assert parse_settings({"api_key": "k-123456", "page_size": value}, BUILTIN).page_size == 5


def test_cli_config_file_with_fractional_numbers(server) -> None:
    """The SDK reads a JSON config file's floats as Decimal: the run must take them."""
    out = run_cli(config_for(server, backoff_factor=0.5, request_timeout=30.5,
                             max_requests_per_second=500.5, page_size=50))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.records["contacts"]
