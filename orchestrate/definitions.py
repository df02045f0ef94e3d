"""The Dagster code location: one asset partitioned by account, a job, a schedule and a
sensor that keeps the partitions equal to the tenants file.

    dagster dev -m orchestrate
    dagster asset materialize -m orchestrate --select tenant_sync --partition acme

Settings (environment): `TAP_ANALYTICS_TENANTS` (the tenants file), `TAP_ANALYTICS_FLEET_
SCHEDULE` (cron, hourly by default), `TAP_ANALYTICS_FLEET_SCHEDULE_RUNNING` (true to start
the schedule switched on), `TAP_ANALYTICS_FLEET_RETRIES` and `_RETRY_DELAY` (Dagster's
retry policy for transient failures). How many accounts run at once is the limit of the
pool `tap_analytics` (`dagster.yaml`: `concurrency.pools.default_limit`, written by
`scripts/fleet.sh` from `TAP_ANALYTICS_FLEET_CONCURRENCY`, default 4); how many of one API
host, a tag limit on `tap_analytics/api_host` (`TAP_ANALYTICS_FLEET_HOST_CONCURRENCY`).
"""

import json
import os
import typing as t
from datetime import datetime, timedelta, timezone

import dagster as dg

from orchestrate import staleness
from orchestrate.run_tags import JOB, partition_tags
from orchestrate.run_tenant import state_database_uri, sync
from orchestrate.table_results import Run, column_schema, table_checks, table_results
from orchestrate.tables import Table, TableTranslator, tables
from orchestrate.tenants import Tenant, TenantError, load_tenants, tenants_file

POOL = "tap_analytics"
TENANTS = dg.DynamicPartitionsDefinition(name="tenants")


def _number(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def table_spec(table: Table, translator: TableTranslator) -> dg.AssetSpec:
    policy = freshness_policy()
    return dg.AssetSpec(
        key=[*translator.key_prefix(table), table.name], group_name=translator.group(table),
        owners=translator.owners(table), kinds={"meltano", "postgres"}, skippable=True,
        freshness_policy=policy,
        description=f"The `{table.name}` table of each account's schema"
                    + (" (a declared resource: only accounts that declare it)"
                       if table.declared else ""),
        metadata={"dagster/column_schema": column_schema(table),
                  "tap_analytics/stream": table.name,
                  "tap_analytics/key": ", ".join(table.key)})


def freshness_policy() -> dg.FreshnessPolicy | None:
    """`TAP_ANALYTICS_FLEET_FRESHNESS_HOURS`: Dagster's freshness policy for each table. It
    judges a table by its newest materialization of any account (Dagster's freshness is
    per asset, not per partition), so one fresh account hides every stale one; per
    account, each materialization's `synced_at` and `newest_updated_at` tell. Dagster
    evaluates it only where the instance's `freshness` daemon is on (`fleet.sh`'s
    `dagster.yaml` turns it off)."""
    hours = os.environ.get("TAP_ANALYTICS_FLEET_FRESHNESS_HOURS")
    if not hours:
        return None
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=float(hours)))


def build_tenant_sync(translator: TableTranslator | None = None,
                      tenants: t.Sequence[Tenant] | None = None) -> dg.AssetsDefinition:
    """One multi-asset, an asset per table, partitioned by account: materializing some of
    its assets syncs only those streams of that account."""
    translator = translator or TableTranslator()
    if tenants is None:
        try:
            tenants = load_tenants()
        except TenantError:  # the sensor reports it; the built-in tables still load
            tenants = []
    known = tables(tenants)
    specs = {table.name: table_spec(table, translator) for table in known}
    by_key = {spec.key: name for name, spec in specs.items()}
    info = {table.name: table for table in known}

    @dg.multi_asset(
        name="tenant_sync", specs=list(specs.values()), can_subset=True,
        check_specs=[c for spec in specs.values() for c in table_checks(spec.key, TENANTS)],
        partitions_def=TENANTS, pool=POOL,
        retry_policy=dg.RetryPolicy(max_retries=int(_number("TAP_ANALYTICS_FLEET_RETRIES", 2)),
                                    delay=_number("TAP_ANALYTICS_FLEET_RETRY_DELAY", 60),
                                    backoff=dg.Backoff.EXPONENTIAL))
    def tenant_sync(context: dg.AssetExecutionContext) -> t.Iterator[t.Any]:
        """One account's `meltano run tap-analytics target-postgres`: its own settings,
        schema and state id; only the selected tables' streams when a subset is asked."""
        tenant = context.partition_key
        selected = sorted(by_key[k] for k in context.selected_asset_keys)
        subset = None if len(selected) == len(by_key) else selected
        try:
            outcome = sync(tenant, tenants_file().resolve(), context.log,
                           f"run {context.run_id[:8]}", streams=subset)
        except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
            # its Meltano is stopped already; a run someone terminated is not retried
            # (Dagster retries an interrupted step by its retry policy: right for a pod
            # preempted)
            run = context.instance.get_run_by_id(context.run_id)
            if run is not None and run.status == dg.DagsterRunStatus.CANCELING:
                raise dg.Failure(description=f"{tenant}: terminated",
                                 allow_retries=False) from None
            raise
        run = Run(context.instance, context.run_id, tenant, context.selected_asset_check_keys)
        yield from table_results(outcome, run, selected, info, specs)
        if outcome.failed is not None:
            # the tap's own line is the reason; a wrong key or access is not retried
            raise dg.Failure(description=f"{tenant}: {outcome.failed}",
                             allow_retries=outcome.retry)

    return tenant_sync


PARTITIONED_CONFIG = dg.PartitionedConfig(partitions_def=TENANTS,
                                          run_config_for_partition_key_fn=lambda _key: {},
                                          tags_for_partition_key_fn=partition_tags)
# in process: the run's one step needs no process of its own (meltano is the work)
tenant_sync = build_tenant_sync()
sync_tenants = dg.define_asset_job(JOB, selection=[tenant_sync], partitions_def=TENANTS,
                                   executor_def=dg.in_process_executor, config=PARTITIONED_CONFIG)


@dg.sensor(job=sync_tenants, minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING)
def tenants_file_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Accounts added to or removed from the tenants file become or stop being partitions,
    with no deploy of code."""
    wanted = [t.id for t in load_tenants()]
    have = set(context.instance.get_dynamic_partitions(TENANTS.name))
    return dg.SensorResult(dynamic_partitions_requests=[
        TENANTS.build_add_request([i for i in wanted if i not in have]),
        TENANTS.build_delete_request(sorted(have - set(wanted))),
    ])


@dg.schedule(job=sync_tenants,
             cron_schedule=os.environ.get("TAP_ANALYTICS_FLEET_SCHEDULE") or "0 * * * *",
             default_status=dg.DefaultScheduleStatus.RUNNING
             if os.environ.get("TAP_ANALYTICS_FLEET_SCHEDULE_RUNNING", "").lower() == "true"
             else dg.DefaultScheduleStatus.STOPPED)
def every_tenant(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Every account in the tenants file, one run each (the pool caps how many at once).

    The partitions are read in one call and each request carries its partition's tags
    already: left to Dagster, each request is checked with a query of its own."""
    have = set(context.instance.get_dynamic_partitions(TENANTS.name))
    return [dg.RunRequest(partition_key=t.id, run_key=f"{t.id}:{context.scheduled_execution_time}",
                          run_config={},
                          tags=PARTITIONED_CONFIG.get_tags_for_partition_key(t.id, JOB))
            for t in load_tenants() if t.id in have]


STALE_CHECK = "synced_recently"
# each account's syncs, whatever tables each synced: what the staleness check judges
ACCOUNT_SYNC = dg.AssetSpec(
    key=[*TableTranslator().key_prefix(Table("account_sync", (), ())), "account_sync"],
    group_name=TableTranslator().group(Table("account_sync", (), ())), partitions_def=TENANTS,
    kinds={"meltano"}, description="Each account's syncs (a partition per account). Its "
    f"check `{STALE_CHECK}` fails for an account whose last successful sync is older than "
    "TAP_ANALYTICS_FLEET_STALE_HOURS (24), judged every few minutes by the sensor "
    "`stale_accounts`.")


def stale_evaluations(accounts: t.Sequence[str], now: datetime) -> list[
        dg.AssetCheckEvaluation]:
    """The check's result for each of `accounts`, from one query of the state database."""
    limit = staleness.stale_after(os.environ)
    last = staleness.last_syncs(state_database_uri(os.environ)[0])
    return [dg.AssetCheckEvaluation(
        asset_key=ACCOUNT_SYNC.key, check_name=STALE_CHECK, passed=not verdict.stale,
        partition=verdict.account, severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.description(limit),
        metadata={"last_synced_at": verdict.last.isoformat() if verdict.last else "never",
                  "stale_after_hours": limit.total_seconds() / 3600})
        for verdict in staleness.judge(accounts, last, now, limit)]


@dg.asset_check(asset=ACCOUNT_SYNC.key, name=STALE_CHECK, partitions_def=TENANTS,
                description="The account's last successful sync is recent enough "
                            "(TAP_ANALYTICS_FLEET_STALE_HOURS)")
def synced_recently(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """One account's check run by hand; the sensor `stale_accounts` judges them all."""
    [evaluation] = stale_evaluations([context.partition_key], datetime.now(timezone.utc))
    return dg.AssetCheckResult(passed=evaluation.passed, severity=evaluation.severity,
                               description=evaluation.description,
                               metadata=evaluation.metadata)


@dg.sensor(minimum_interval_seconds=int(_number("TAP_ANALYTICS_FLEET_STALE_INTERVAL", 300)),
           default_status=dg.DefaultSensorStatus.RUNNING)
def stale_accounts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Every account's `synced_recently` from one query, reported as the check's result
    per partition when it changes (or was never reported): a tick costs one query and no
    event while nothing changes."""
    accounts = context.instance.get_dynamic_partitions(TENANTS.name)
    told = json.loads(context.cursor) if context.cursor else {}
    evaluations = stale_evaluations(accounts, datetime.now(timezone.utc))
    changed = [e for e in evaluations if told.get(e.partition) != e.passed]
    now = {e.partition: e.passed for e in evaluations}
    return dg.SensorResult(asset_events=changed, cursor=json.dumps(now, separators=(",", ":")))


defs = dg.Definitions(
    assets=[tenant_sync, ACCOUNT_SYNC],
    asset_checks=[synced_recently],
    jobs=[sync_tenants],
    sensors=[tenants_file_sensor, stale_accounts],
    schedules=[every_tenant],
)
