"""TapAnalytics: settings, stream discovery and the command line entry point."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import typing as t
from functools import cached_property
from importlib.metadata import version

import click
from singer_sdk import Tap
from singer_sdk.helpers.capabilities import PluginCapabilities

from tap_analytics.auth import build_authenticator
from tap_analytics.discovery import declared_schema, sample_schemas
from tap_analytics.http import RateLimiter, RequestBudget, SessionPool
from tap_analytics.output import BufferedMsgSpecWriter, OutputClosedError, OutputStateWriter
from tap_analytics.page_pool import PagePool
from tap_analytics.redact import install_log_redaction, redact
from tap_analytics.runner import StreamRunner
from tap_analytics.settings import (
    CONFIG_SCHEMA,
    ConfigError,
    Settings,
    normalized_config,
    parse_settings,
)
from tap_analytics.streams import BUILTIN_STREAMS, link_parents, stream_class

if t.TYPE_CHECKING:
    from types import FrameType

    from tap_analytics.client import AnalyticsStream

LOGGER = logging.getLogger("tap-analytics")
BUILTIN_RESOURCES = tuple(cls.resource for cls in BUILTIN_STREAMS)


class TapAnalytics(Tap):
    """Singer tap for the Analytics API."""

    name = "tap-analytics"
    config_jsonschema = CONFIG_SCHEMA
    message_writer_class = BufferedMsgSpecWriter
    # Singer BATCH is not offered: the SDK's batch path bypasses the record path (the schema
    # in force, its deferred first SCHEMA, record versions), so `batch_config` is refused
    capabilities: t.ClassVar = [c for c in Tap.capabilities if c != PluginCapabilities.BATCH]

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.runner = StreamRunner()
        install_log_redaction()  # the SDK has set up its log handlers by now

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Our own checks first: one line naming the setting, never echoing a value.

        Discovery (`raise_errors` False) needs no credentials; bad values still stop it.
        """
        settings = parse_settings(self._config, BUILTIN_RESOURCES, require_credentials=raise_errors)
        self.__dict__["settings"] = settings
        # Numbers arrive as Decimal (JSON files), text (environment) or int/float (Meltano).
        self._config = normalized_config(self._config)
        return super()._validate_config(raise_errors=raise_errors)

    @cached_property
    def state_writer(self) -> OutputStateWriter:  # type: ignore[override]
        """STATE through the writer's lock, after the records it covers."""
        return OutputStateWriter(self.message_writer)

    @cached_property
    def settings(self) -> Settings:
        return parse_settings(self.config, BUILTIN_RESOURCES, require_credentials=False)

    @cached_property
    def sessions(self) -> SessionPool:
        settings = self.settings
        rate = settings.max_requests_per_second
        budget = RequestBudget(settings.max_concurrency, RateLimiter(rate) if rate else None)
        return SessionPool(budget, user_agent=f"tap-analytics singer-sdk/{version('singer-sdk')}",
                           allowed=(settings.url_base, settings.token_url))

    @cached_property
    def page_pool(self) -> PagePool:
        """Threads that fetch the pages of listings ahead, nearest first (the budget bounds
        the requests in flight)."""
        return PagePool(self.settings.max_concurrency)

    @cached_property
    def authenticator(self) -> t.Any:
        return build_authenticator(self.settings, session=self.sessions.new_session())

    sample_api = False  # set by --discover: learn each stream's fields from the live API

    def run_discovery(self) -> str:
        """`--discover`: the declared fields, plus those the first page of each listing shows.

        A sync without a catalog skips the sampling: its first page teaches the same fields
        (see `conform.py`), without extra requests.
        """
        self.sample_api = self.settings.discovery_sampling
        return super().run_discovery()

    def discover_streams(self) -> list[AnalyticsStream]:
        classes = list(BUILTIN_STREAMS)
        classes += [stream_class(resource) for resource in self.settings.resources]
        link_parents(classes)
        streams = [cls(self, schema=declared_schema(cls.resource, cls in BUILTIN_STREAMS))
                   for cls in classes]
        if self.sample_api:
            sample_schemas(self, streams)
        return streams

    def sync_all(self) -> None:  # type: ignore[misc]  # the SDK marks it final
        """The SDK's `sync_all`, with the selected streams run side by side (runner.py)."""
        self._reset_state_progress_markers()
        self._set_compatible_replication_methods()
        if self.state:
            self.state_writer.write_state(self.state)
        self._select_declared_outside_catalog()
        streams = [s for s in self.streams.values()
                   if (s.selected or s.has_selected_descendents) and not s.parent_stream_type]
        for stream in self.streams.values():
            if stream.selected:
                _ = stream.stream_state  # every entry exists before threads write state
            else:
                stream.keep_state_apart()
        try:
            self.runner.run(streams, side_by_side=self.settings.max_concurrency > 1)
        finally:
            self.state_writer.write_state(self.state)
        for stream in self.streams.values():
            stream.log_sync_costs()

    def _select_declared_outside_catalog(self) -> None:
        """A declared resource the input catalog does not list is synced, with a warning.

        The SDK leaves a stream out of a catalog unselected; but a catalog made before a
        resource was declared (Meltano's `catalog:` extra, the fleet's shipped one) would then
        drop that resource's every record without a word. Declaring it is the selection;
        listing it in the catalog puts it under the catalog's `selected` again."""
        catalog = self.input_catalog
        if catalog is None:
            return
        for stream in self.streams.values():
            if stream.resource in BUILTIN_RESOURCES or catalog.get_stream(stream.name):
                continue
            stream.selected = True
            # the maps a parent's records pass before its first record is written
            self.mapper.register_raw_stream_schema(stream.name, stream.schema,
                                                   stream.primary_keys)
            self.logger.warning(
                "resource %r is declared but not in the catalog: synced with its declared "
                "fields (add it to the catalog to select or deselect it there)", stream.name)

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        LOGGER.error("Stopped by %s: the last STATE message covers everything written; "
                     "re-run with it to resume.", name)
        self.runner.cancelled.set()
        self.message_writer.terminate(self.state, 128 + signum)


def fail(code: int, message: str, *args: t.Any) -> t.NoReturn:
    """The run's last line: threads still winding down (page and child fetchers) may log
    on, so every log handler is held while the line is written and stderr then closed, and
    it stays the last line a user or an orchestrator sees."""
    logging.disable(logging.WARNING)
    handlers = {id(h): h for h in _all_handlers()}.values()
    for handler in handlers:
        handler.acquire()  # a line another thread is writing ends first
    try:
        LOGGER.error(message, *args)
    finally:
        for stream in (sys.stderr, sys.stdout):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
        for handler in handlers:
            handler.release()
    sys.exit(code)


def _all_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict
                                      .values() if isinstance(logger, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers]


def main() -> None:
    """Console entry point: one clear, secret-free line on any failure."""
    try:
        code = TapAnalytics.cli.main(standalone_mode=False)
    except click.ClickException as exc:  # usage errors, as click reports them
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        fail(130, "Interrupted.")
    except ConfigError as exc:
        fail(2, "Invalid configuration: %s", exc)
    except OutputClosedError as exc:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quiet exit flush
        fail(1, "tap-analytics failed: %s", exc)
    except Exception as exc:
        install_log_redaction()  # the failure may have come before the tap installed it
        LOGGER.debug("Traceback of the failure", exc_info=True)
        message = str(exc) or type(exc).__name__
        fail(1, "tap-analytics failed: %s", redact(message.splitlines()[0]))
    sys.stdout.flush()
    # The run is over and all of it written: a signal now stops nothing. Python puts the
    # default handlers back while it winds down, so a SIGTERM in those last milliseconds
    # would end a complete run as killed (-15); ignored, the run exits as it ended.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
