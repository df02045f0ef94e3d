"""`python -m fake_api`: start the fake Analytics API on a free loopback port and say which."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading

from fake_api.server import FakeAPI, Rule, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fake_api", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--scale", type=int, default=1000, help="records per big stream")
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--segment-size", type=int, default=None)
    parser.add_argument("--big-streams", default=None,
                        help="comma list of incremental streams sized --scale (default all)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--mixed-timestamps", action="store_true",
                        help="updated_at in every RFC 3339 form, some with offsets")
    parser.add_argument("--drift-seed", type=int, default=None,
                        help="drift mode: undocumented fields and changing types from this seed")
    parser.add_argument("--page-cap", type=int, action="append", default=[],
                        help="answer at most this many records a page whatever limit asks "
                             "(repeat: the cap changes every --cap-every requests to a path)")
    parser.add_argument("--cap-every", type=int, default=3)
    parser.add_argument("--total-mode", choices=("mixed", "always", "never"), default="mixed",
                        help="which offset listings state their total")
    parser.add_argument("--total-cap", type=int, default=None,
                        help="a total that stops counting: it says at most this many records")
    parser.add_argument("--missing-cursor-seed", type=int, default=None,
                        help="some records' updated_at null, absent or empty, from this seed")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--token-ttl", type=int, default=3600)
    parser.add_argument("--fault", action="append", default=[],
                        help='a JSON fault rule, e.g. {"path": "/v1/contacts", "kind": "503"}')
    parser.add_argument("--port-file", help="also write the port to this file")
    args = parser.parse_args(argv)
    big = tuple(args.big_streams.split(",")) if args.big_streams else None
    api = FakeAPI(scale=args.scale, segments=args.segments, segment_size=args.segment_size,
                  big=big, drift_seed=args.drift_seed, mixed_timestamps=args.mixed_timestamps,
                  api_key=args.api_key, token_ttl=args.token_ttl, latency_ms=args.latency_ms,
                  page_caps=tuple(args.page_cap), cap_every=args.cap_every,
                  total_mode=args.total_mode, total_cap=args.total_cap,
                  missing_cursor_seed=args.missing_cursor_seed,
                  rules=[Rule(**json.loads(rule)) for rule in args.fault])
    server = serve(api, port=args.port)
    port = server.server_port
    if args.port_file:
        with open(args.port_file, "w") as handle:
            handle.write(str(port))
    print(f"fake-api listening on http://127.0.0.1:{port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    server.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
