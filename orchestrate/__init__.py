"""Many accounts of the Analytics API, each a partition of one Dagster asset.

`dagster dev -m orchestrate` loads `defs`. The tenants file parser (`orchestrate.tenants`)
needs no Dagster, so the tap's own test venv can import it.
"""

try:
    from orchestrate.definitions import defs
except ModuleNotFoundError as exc:  # no Dagster in this venv: only the parser is usable
    if exc.name != "dagster":
        raise
else:
    __all__ = ["defs"]
