"""Counts of what the reliability tests did, summed over a run and printed at its end."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter = Counter()


def count(what: str, n: int = 1) -> None:
    COUNTS[what] += n
