"""Child listings (`segment_people`): the parent collects one partition per record, then
the child reads every partition not finished yet, side by side (`fanout.py`), recording
each finished listing in its state so that a stopped run resumes past it."""

from __future__ import annotations

import typing as t

from singer_sdk.exceptions import FatalAPIError

from tap_analytics.fanout import Finished, fan_out
from tap_analytics.retries import PartitionGoneError

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_analytics.state import ChildProgress


class ChildListings:
    """A mixin of `AnalyticsStream`."""

    def generate_child_contexts(self, record: dict, context: Context | None
                                ) -> t.Iterable[Context | None]:
        """Collect child partitions instead of syncing each child per record.

        A record the primary stream map filters out (`__filter__`) has no children read.
        """
        if not self.child_streams or not self.stream_maps[0].get_filter_result(record):
            return ()
        for child in self.child_streams:
            spec = child.resource.parent
            if spec.field not in record:
                msg = f"{self.name}: record has no {spec.field!r} for child {child.name!r}"
                raise FatalAPIError(msg)
            child.pending_partitions.append({spec.placeholder: record[spec.field]})
        return ()

    def sync_collected_children(self) -> None:
        for child in self.child_streams:
            if child.selected or child.has_selected_descendents:
                child.sync()
            child.pending_partitions = []

    def child_records(self, progress: ChildProgress) -> t.Iterator[dict]:
        """Every parent's listing not finished yet, side by side; a finished listing is
        recorded in the state at once (all its records are written by then)."""
        partitions, self.pending_partitions = self.pending_partitions, []
        field = self.resource.parent.placeholder
        todo = progress.todo(partitions, field)
        if progress.resumed:
            self.logger.info("Stream '%s' resumes: %d of %d parent listings left to read.",
                             self.name, len(todo), len(partitions))
        workers = self.settings.max_concurrency
        for item in fan_out(todo, self._partition_records, workers, window=4 * workers):
            if isinstance(item, Finished):
                self.analytics_tap.message_writer.commit()  # the listing's records first
                progress.finished(item.partition[field])
                self.state_manager.is_flushed = False
                self._write_state_message()
            else:
                yield item

    def _partition_records(self, context: dict) -> t.Iterator[dict]:
        """One child listing (its records are stamped with the parent's key)."""
        try:
            yield from self.request_records(context)
        except PartitionGoneError as exc:
            self.logger.warning("%s; skipping %s (its parent is gone)", exc, context)
