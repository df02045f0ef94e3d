"""The Singer SDK's standard tap tests, against the fake API."""

from __future__ import annotations

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_analytics.tap import TapAnalytics
from tests.helpers import config_for, discovered_catalog, start_server

SERVER = start_server(scale=60, segments=4)
CONFIG = config_for(SERVER, page_size=25)

# The catalog of `--discover`, which samples the API: the SDK's suite holds records to it.
TestTapAnalytics = get_tap_test_class(
    tap_class=TapAnalytics,
    config=CONFIG,
    catalog=discovered_catalog(CONFIG),
    suite_config=SuiteConfig(max_records_limit=None),
)


def teardown_module() -> None:
    """The fake API this module's suite read from stops with the module."""
    SERVER.server.shutdown()
    SERVER.server.server_close()
