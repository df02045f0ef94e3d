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
    return missing_tags({PARTITION_TAG: tenant_id})


def missing_tags(tags: t.Mapping[str, str]) -> dict[str, str]:
    """What a run of an account lacks of its account's tags (a run of the assets started
    from the asset graph, an asset backfill or a user's own schedule or sensor carries only
    `dagster/partition`). A `dagster-k8s/config` of the run's own keeps what it says and
    gains the account's Secret. Raises `TenantError` when the tenants file cannot be read."""
    account = tags.get(PARTITION_TAG)
    tenant = tenant_by_id(account) if account else None
    if tenant is None:
        return {}
    missing = {} if HOST_TAG in tags else {HOST_TAG: tenant.api_host(os.environ)}
    if tenant.secret:
        own = tags.get(K8S_CONFIG_TAG)
        try:
            config = _with_secret(json.loads(own) if own else {}, tenant.secret)
        except (ValueError, TypeError, AttributeError):
            config = None  # not dagster-k8s' shape: Dagster's launcher reports it
        if config is not None and json.dumps(config) != own:
            missing[K8S_CONFIG_TAG] = json.dumps(config)
    return missing


def _with_secret(config: dict[str, t.Any], secret: str) -> dict[str, t.Any]:
    container = config.setdefault("container_config", {})
    env_from = container.setdefault("env_from", [])
    if {"secret_ref": {"name": secret}} not in env_from:
        env_from.append({"secret_ref": {"name": secret}})
    return config
