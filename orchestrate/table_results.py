"""One account's run, as Dagster events per table: a materialization for each table whose
rows landed (rows written, the table's rows, its schema, its bookmark), and its checks.

A stream that failed does not hide those that landed: they are materialized before the
step fails with the failed one's line.
"""

from __future__ import annotations

import datetime
import time
import typing as t

import dagster as dg

from orchestrate.run_report import TableFacts
from orchestrate.tables import Table

if t.TYPE_CHECKING:
    from orchestrate.run_tenant import Outcome

CHECK = "exact"


def table_checks(key: dg.AssetKey, partitions: dg.PartitionsDefinition
                 ) -> list[dg.AssetCheckSpec]:
    """The table's check, evaluated per account (partition) in the account's run."""
    return [dg.AssetCheckSpec(CHECK, asset=key, partitions_def=partitions, description=(
        "Nothing duplicated on the stream's key: the table's primary key is that key, so "
        "PostgreSQL refuses a duplicate (read from its catalog: no scan). Nothing lost: "
        "where the API announced a `total`, the run read every record it announced (only "
        "a warning when that alone fails: records the API deletes during a run count "
        "short)"))]


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in table.columns])


def table_results(outcome: Outcome, partition: str, selected: t.Sequence[str],
                  tables: t.Mapping[str, Table], specs: t.Mapping[str, dg.AssetSpec]
                  ) -> t.Iterator[dg.AssetMaterialization | dg.AssetCheckResult]:
    """A table's materialization is an `AssetMaterialization` event rather than its output
    (`MaterializeResult`): the same record in Dagster's event log, without the STEP_OUTPUT
    event an output adds (nothing downstream reads the output: the rows are in PostgreSQL),
    about a fifth of a run's events. Its outputs are optional (`can_subset`)."""
    tally = outcome.tally
    if tally is None:  # the run never started (a bad tenant entry, a busy account)
        return
    failed = outcome.failed is not None
    synced_at = time.time()
    for name in selected:
        if tally.ended.get(name) is None and name not in outcome.tables:
            continue  # not a stream of this account (a resource it does not declare)
        if not tally.landed(name, failed):
            continue
        key = specs[name].key
        facts = outcome.tables.get(name, TableFacts(0, ()))
        yield dg.AssetMaterialization(asset_key=key, partition=partition, metadata={
            **_metadata(outcome, tables[name], facts, synced_at),
            "rows_read": tally.read.get(name, 0), "rows_written": tally.written.get(name, 0)})
        yield _check(key, tables[name], facts, tally.announced.get(name))


def _metadata(outcome: Outcome, table: Table, facts: TableFacts,
              synced_at: float) -> dict[str, t.Any]:
    metadata: dict[str, t.Any] = {
        "dagster/partition_row_count": facts.rows or 0,
        "dagster/table_name": f"{outcome.schema}.{table.name}",
        "dagster/column_schema": column_schema(table),
        "synced_at": dg.MetadataValue.timestamp(synced_at),
    }
    bookmark = outcome.bookmarks.get(table.name)
    if bookmark is not None:
        metadata["bookmark"] = bookmark
        newest = _instant(bookmark)
        if newest is not None:
            metadata["newest_updated_at"] = dg.MetadataValue.timestamp(newest)
    return metadata


def _instant(value: str) -> float | None:
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _check(key: dg.AssetKey, table: Table, facts: TableFacts,
           read: tuple[int, int] | None) -> dg.AssetCheckResult:
    wanted = set(table.key)
    metadata: dict[str, t.Any] = {"key": ", ".join(table.key),
                                  "primary_key": ", ".join(facts.key)}
    # no duplicate is possible without rows, nor defined without a key
    keyed = not wanted or not facts.rows or set(facts.key) == wanted
    complete = True
    if read is not None:
        metadata.update(read=read[0], announced=read[1])
        complete = read[0] >= read[1]
    return dg.AssetCheckResult(
        asset_key=key, check_name=CHECK, passed=keyed and complete, metadata=metadata,
        severity=dg.AssetCheckSeverity.ERROR if not keyed else dg.AssetCheckSeverity.WARN,
        description=None if keyed else "the table's primary key is not the stream's key")
