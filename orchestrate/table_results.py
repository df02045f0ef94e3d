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
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

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


class Run(t.NamedTuple):
    """Where the events go: the run's instance and id, the account, the checks selected."""

    instance: dg.DagsterInstance
    run_id: str
    partition: str
    checks: t.AbstractSet[dg.AssetCheckKey]


def table_results(outcome: Outcome, run: Run, selected: t.Sequence[str],
                  tables: t.Mapping[str, Table], specs: t.Mapping[str, dg.AssetSpec]
                  ) -> t.Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Each landed table's materialization, then its check's evaluation.

    Both are events, not outputs (`MaterializeResult`, `AssetCheckResult`): the same records
    in Dagster's event log without a STEP_OUTPUT event per table and per check (nothing
    downstream reads an output: the rows are in PostgreSQL), and each check names the
    materialization it judged from one query for all tables, where an `AssetCheckResult`
    makes one per check. Outputs are optional here (`can_subset`)."""
    tally = outcome.tally
    if tally is None:  # the run never started (a bad tenant entry, a busy account)
        return
    failed = outcome.failed is not None
    landed = [name for name in selected
              if (tally.ended.get(name) is not None or name in outcome.tables)  # its stream
              and tally.landed(name, failed)]
    synced_at = time.time()
    facts = {name: outcome.tables.get(name, TableFacts(0, ())) for name in landed}
    for name in landed:
        yield dg.AssetMaterialization(asset_key=specs[name].key, partition=run.partition,
                                      metadata={
            **_metadata(outcome, tables[name], facts[name], synced_at),
            "rows_read": tally.read.get(name, 0), "rows_written": tally.written.get(name, 0)})
    checked = [name for name in landed
               if dg.AssetCheckKey(specs[name].key, CHECK) in run.checks]
    judged = _materializations(run, [specs[name].key for name in checked])
    for name in checked:
        key = specs[name].key
        yield _check(key, tables[name], facts[name], tally.announced.get(name), run.partition,
                     judged.get(key))


def _materializations(run: Run, keys: t.Sequence[dg.AssetKey]
                      ) -> dict[dg.AssetKey, AssetCheckEvaluationTargetMaterializationData]:
    """The materialization of each asset this run just stored for its account: what its check
    judged (the asset's newest, unless another account's run stored one since; then
    looked up by partition)."""
    if not keys:
        return {}
    found: dict[dg.AssetKey, t.Any] = {}  # EventLogRecord, by asset
    for record in run.instance.get_asset_records(list(keys)):
        newest = record.asset_entry.last_materialization_record
        if newest is not None and newest.run_id == run.run_id \
                and newest.partition_key == run.partition:
            found[record.asset_entry.asset_key] = newest
    for key in keys:
        if key not in found:
            records = run.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[run.partition]),
                limit=1).records
            if records:
                found[key] = records[0]
    return {key: AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
        for key, record in found.items()}


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
           read: tuple[int, int] | None, partition: str,
           target: AssetCheckEvaluationTargetMaterializationData | None
           ) -> dg.AssetCheckEvaluation:
    wanted = set(table.key)
    metadata: dict[str, t.Any] = {"key": ", ".join(table.key),
                                  "primary_key": ", ".join(facts.key)}
    # no duplicate is possible without rows, nor defined without a key
    keyed = not wanted or not facts.rows or set(facts.key) == wanted
    complete = True
    if read is not None:
        metadata.update(read=read[0], announced=read[1])
        complete = read[0] >= read[1]
    return dg.AssetCheckEvaluation(
        asset_key=key, check_name=CHECK, passed=keyed and complete, metadata=metadata,
        severity=dg.AssetCheckSeverity.ERROR if not keyed else dg.AssetCheckSeverity.WARN,
        description=None if keyed else "the table's primary key is not the stream's key",
        partition=partition, target_materialization_data=target, blocking=False)
