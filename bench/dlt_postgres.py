"""dlt's rest_api_source, every resource parallelized, into PostgreSQL with dlt's own
postgres destination (merge on the primary key, as the seeds declare)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import dlt
from dlt_client import build_all


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--pipelines-dir", required=True)
    args = parser.parse_args()
    pipeline = dlt.pipeline(pipeline_name=args.schema, pipelines_dir=args.pipelines_dir,
                            destination=dlt.destinations.postgres(credentials=args.dsn),
                            dataset_name=args.schema)
    info = pipeline.run(build_all(args.base_url, args.api_key, args.limit, parallel=True))
    print(json.dumps({"loads": len(info.loads_ids)}), file=sys.stderr)


if __name__ == "__main__":
    main()
