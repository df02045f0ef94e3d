"""Dagster's queued run coordinator, which gives every run of an account the tags of its
account when it is submitted, as Dagster's run attribution example adds tags.

A run of the job `sync_tenants` has them from the job's partitioned config; a run of the
assets themselves (the asset graph, an asset backfill, `Materialize` in the UI, a user's
own schedule or sensor that targets the assets) is a run of Dagster's implicit asset job
and carries only `dagster/partition`. Every run started through the instance passes here
(the UI, the daemon's schedules, sensors and backfills), so each is queued under its API
host's limit and, on Kubernetes, starts with its account's Secret.

    run_coordinator:
      module: orchestrate.coordinator
      class: AccountRunCoordinator
      config: {dequeue_interval_seconds: 5}
"""

from __future__ import annotations

import typing as t

from dagster import AssetKey, DagsterInstance, DagsterRun, QueuedRunCoordinator, SubmitRunContext

from orchestrate.run_tags import missing_tags
from orchestrate.tables import Table, TableTranslator
from orchestrate.tenants import TenantError


def run_assets(instance: DagsterInstance, run: DagsterRun) -> list[AssetKey]:
    """The assets a run materializes or checks: its selection, else (a job made of just
    those assets, as a schedule or sensor that targets assets makes) its plan's outputs."""
    keys = [*(run.asset_selection or ()), *(c.asset_key for c in run.asset_check_selection or ())]
    if keys or not run.execution_plan_snapshot_id:
        return keys
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    outputs = [o.properties for step in plan.steps for o in step.outputs if o.properties]
    return [key for o in outputs for key in (
        o.asset_key, o.asset_check_key.asset_key if o.asset_check_key else None) if key]


def is_account_run(instance: DagsterInstance, run: DagsterRun, prefix: t.Sequence[str]) -> bool:
    """A run of this code location's assets, under its key prefix (a run of another code
    location whose partition has an account's name never gets that account's Secret)."""
    return any(list(key.path[:len(prefix)]) == list(prefix) for key in run_assets(instance, run))


class AccountRunCoordinator(QueuedRunCoordinator):
    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        try:
            tags = missing_tags(run.tags)  # none for the job's runs: its config gave them
        except TenantError as exc:  # the run goes on; without its key it fails, saying so
            self._logger.warning("run %s: its account's tags are not added: %s",
                                 run.run_id[:8], exc)
            tags = {}
        prefix = TableTranslator().key_prefix(Table("", (), ()))
        if tags and is_account_run(self._instance, run, prefix):
            self._instance.add_run_tags(run.run_id, tags)
            context = SubmitRunContext(run.with_tags({**run.tags, **tags}), context.workspace)
        return super().submit_run(context)
