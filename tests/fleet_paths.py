"""A code location for tests/test_fleet_paths.py: the fleet's own definitions, plus the
schedule and sensor a user would add that target the assets themselves (runs of Dagster's
implicit asset job, which carry only `dagster/partition`)."""

import dagster as dg

from orchestrate import definitions

PATH_TAG = "test/path"
TABLE = dg.AssetKey(["tap_analytics", "teams"])


@dg.schedule(cron_schedule="* * * * *", target=dg.AssetSelection.assets(TABLE),
             default_status=dg.DefaultScheduleStatus.RUNNING)
def users_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key="path_a", tags={PATH_TAG: "user schedule"},
                         run_key=str(context.scheduled_execution_time))


@dg.sensor(target=dg.AssetSelection.assets(TABLE), minimum_interval_seconds=1,
           default_status=dg.DefaultSensorStatus.RUNNING)
def users_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    return dg.SensorResult(run_requests=[dg.RunRequest(
        partition_key="path_b", run_key="once", tags={PATH_TAG: "user sensor"})])


defs = dg.Definitions.merge(definitions.defs, dg.Definitions(schedules=[users_schedule],
                                                             sensors=[users_sensor]))
