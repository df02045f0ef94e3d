"""The command line both benchmark clients share."""

from __future__ import annotations

import argparse


def client_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--streams", default="conversations,contacts,peoples,segment_people")
    return parser
