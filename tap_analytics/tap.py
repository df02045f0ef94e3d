"""TapAnalytics: settings, stream discovery and the command line entry point."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import sys
import typing as t
from functools import cached_property
from importlib import resources as package_files

import click
from singer_sdk import Tap
from singer_sdk.helpers._packaging import get_sdk_version

from tap_analytics.auth import build_authenticator
from tap_analytics.http import RateLimiter, SessionPool
from tap_analytics.output import BufferedMsgSpecWriter, OutputClosedError
from tap_analytics.redact import install_log_redaction, redact
from tap_analytics.schema_inference import infer_schema
from tap_analytics.settings import CONFIG_SCHEMA, ConfigError, Settings, parse_settings
from tap_analytics.streams import BUILTIN_STREAMS, link_parents, stream_class

if t.TYPE_CHECKING:
    from types import FrameType

    from tap_analytics.client import AnalyticsStream

LOGGER = logging.getLogger("tap-analytics")
BUILTIN_NAMES = tuple(cls.resource.name for cls in BUILTIN_STREAMS)
NUMERIC_SETTINGS = ("page_size", "max_retries", "backoff_factor", "request_timeout",
                    "max_concurrency", "max_requests_per_second")


class TapAnalytics(Tap):
    """Singer tap for the Analytics API."""

    name = "tap-analytics"
    config_jsonschema = CONFIG_SCHEMA
    message_writer_class = BufferedMsgSpecWriter

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        install_log_redaction()  # the SDK has set up its log handlers by now

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # Our own checks first: one line naming the setting, never echoing a value.
        settings = parse_settings(self.config, BUILTIN_NAMES)
        self.__dict__["settings"] = settings
        # Numbers may arrive as text (environment variables, Meltano string settings).
        for name in NUMERIC_SETTINGS:
            if isinstance(self._config.get(name), str):
                self._config[name] = getattr(settings, name)
        return super()._validate_config(raise_errors=raise_errors)

    @cached_property
    def settings(self) -> Settings:
        return parse_settings(self.config, BUILTIN_NAMES)

    @cached_property
    def sessions(self) -> SessionPool:
        rate = self.settings.max_requests_per_second
        return SessionPool(RateLimiter(rate) if rate else None,
                           user_agent=f"tap-analytics singer-sdk/{get_sdk_version()}")

    @cached_property
    def authenticator(self) -> t.Any:
        return build_authenticator(self.settings, session=self.sessions.new_session())

    def discover_streams(self) -> list[AnalyticsStream]:
        classes = list(BUILTIN_STREAMS)
        classes += [stream_class(resource) for resource in self.settings.resources]
        link_parents(classes)
        streams = {}
        for cls in classes:
            stream = cls(self, schema=self._known_schema(cls))
            if cls.resource.schema is None and not stream.schema.get("properties"):
                stream = cls(self, schema=self._inferred_schema(stream, streams))
            streams[cls.resource.name] = stream
        return list(streams.values())

    def _known_schema(self, cls: type[AnalyticsStream]) -> dict:
        resource = cls.resource
        if resource.schema is not None:
            return dict(resource.schema)
        if cls in BUILTIN_STREAMS:
            text = package_files.files("tap_analytics").joinpath(
                "schemas", f"{resource.name}.json").read_text()
            return json.loads(text)
        entry = self.input_catalog.get_stream(resource.name) if self.input_catalog else None
        if entry is not None and entry.schema.properties:
            return entry.schema.to_dict()
        return {"type": "object", "properties": {}}

    def _inferred_schema(self, stream: AnalyticsStream,
                         streams: dict[str, AnalyticsStream]) -> dict:
        context = None
        if stream.resource.parent is not None:
            spec = stream.resource.parent
            parent = streams[spec.resource]
            first = next(iter(parent.request_records(None)), None)
            context = {spec.placeholder: first[spec.field]} if first else None
        sample = []
        if context is not None or stream.resource.parent is None:
            sample = list(itertools.islice(stream.request_records(context), stream.page_size))
            for record in sample:
                record.update(context or {})
        self.logger.warning(
            "Stream '%s' has no declared schema: inferred one from %d records of its first "
            "page; declare 'schema' in its resource entry to fix it.", stream.name, len(sample))
        return infer_schema(sample, required=stream.primary_keys)

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        LOGGER.error("Stopped by %s: the last STATE message covers everything written; "
                     "re-run with it to resume.", name)
        try:
            self._state_writer.write_state(self.state)
        finally:
            raise SystemExit(128 + signum)


def main() -> None:
    """Console entry point: one clear, secret-free line on any failure."""
    try:
        code = TapAnalytics.cli.main(standalone_mode=False)
    except click.ClickException as exc:  # usage errors, as click reports them
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        LOGGER.error("Interrupted.")
        sys.exit(130)
    except ConfigError as exc:
        LOGGER.error("Invalid configuration: %s", exc)
        sys.exit(2)
    except OutputClosedError as exc:
        LOGGER.error("tap-analytics failed: %s", exc)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quiet exit flush
        sys.exit(1)
    except Exception as exc:
        install_log_redaction()  # the failure may have come before the tap installed it
        LOGGER.debug("Traceback of the failure", exc_info=True)
        message = str(exc) or type(exc).__name__
        LOGGER.error("tap-analytics failed: %s", redact(message.splitlines()[0]))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
