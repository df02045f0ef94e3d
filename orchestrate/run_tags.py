"""The tags an account's run carries, whatever started it: the host of its API (the run
queue's limit per host reads it) and, on Kubernetes, its own Secret for the run pod."""

from __future__ import annotations

import json
import os
import typing as t

from orchestrate.tenants import tenant_by_id

JOB = "sync_tenants"  # the code location's job: its runs carry these tags from its config
HOST_TAG = "tap_analytics/api_host"
K8S_CONFIG_TAG = "dagster-k8s/config"  # read by dagster-k8s' run launcher for the run pod
PARTITION_TAG = "dagster/partition"


def partition_tags(tenant_id: str) -> dict[str, str]:
    """Each account's runs carry the host of its API: `dagster.yaml` limits the runs at once
    per value of this tag (`TAP_ANALYTICS_FLEET_HOST_CONCURRENCY`). On Kubernetes, the run
    pod of an account with a `secret` gets that Secret's variables, and no other's."""
    tenant = tenant_by_id(tenant_id)
    if tenant is None:
        return {}
    tags = {HOST_TAG: tenant.api_host(os.environ)}
    if tenant.secret:
        tags[K8S_CONFIG_TAG] = json.dumps(_with_secret({}, tenant.secret))
    return tags


def missing_tags(tags: t.Mapping[str, str]) -> dict[str, str]:
    """What a run of an account lacks of `partition_tags` (a run of the assets started from
    the asset graph, an asset backfill or a user's own schedule or sensor carries only
    `dagster/partition`). A `dagster-k8s/config` of the run's own keeps what it says and
    gains the account's Secret. Raises `TenantError` when the tenants file cannot be read."""
    account = tags.get(PARTITION_TAG)
    wanted = partition_tags(account) if account else {}  # TenantError: no tenants file here
    missing = {k: v for k, v in wanted.items() if k not in tags}
    if K8S_CONFIG_TAG in wanted and K8S_CONFIG_TAG in tags:
        [secret] = [ref["secret_ref"]["name"] for ref in json.loads(
            wanted[K8S_CONFIG_TAG])["container_config"]["env_from"]]
        try:
            merged = _with_secret(json.loads(tags[K8S_CONFIG_TAG]), secret)
        except (ValueError, TypeError, AttributeError):
            merged = None  # not dagster-k8s' shape: Dagster's launcher reports it
        if merged is not None and json.dumps(merged) != tags[K8S_CONFIG_TAG]:
            missing[K8S_CONFIG_TAG] = json.dumps(merged)
    return missing


def _with_secret(config: dict[str, t.Any], secret: str) -> dict[str, t.Any]:
    container = config.setdefault("container_config", {})
    env_from = container.setdefault("env_from", [])
    if {"secret_ref": {"name": secret}} not in env_from:
        env_from.append({"secret_ref": {"name": secret}})
    return config
