"""Drift mode: undocumented fields that a seed invents, and values whose types change.

API.md fixes a few fields per stream; the rest is the API's to decide. In drift mode each
stream carries extra fields whose names, JSON types, nesting and nulls come from a seed;
on every page a share of records sends another type than the field usually has (numbers
as strings, strings as objects, objects as JSON text, booleans as "yes"/"no", date-times
in another offset), and some fields appear only later in a listing.
"""

from __future__ import annotations

import datetime
import json
import random
import typing as t
from dataclasses import dataclass

WORDS = ["score", "level", "region", "channel", "source", "tier", "rank", "origin", "weight",
         "metric", "bucket", "stage", "plan", "locale", "quota", "budget", "rating", "phase",
         "cohort", "signal", "window", "target", "limit", "detail", "label", "marker"]
KINDS = ["string", "integer", "number", "boolean", "object", "array", "datetime"]
DRIFT_SHARE = 0.15
LATE_FROM = 0.6  # late fields appear from this share of a listing on


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str
    null_share: float
    late: bool
    subfields: tuple[tuple[str, str], ...] = ()


def _name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}{rng.randint(1, 99)}"
        if name not in taken:
            taken.add(name)
            return name


def field_specs(seed: int, stream: str, taken: t.Iterable[str]) -> list[FieldSpec]:
    """The undocumented fields of one stream under one seed."""
    rng = random.Random(f"{seed}:{stream}")
    names = set(taken)
    specs = []
    for index in range(rng.randint(3, 6)):
        kind = KINDS[(index + rng.randint(0, len(KINDS) - 1)) % len(KINDS)]
        subfields: tuple[tuple[str, str], ...] = ()
        if kind in ("object", "array"):
            subfields = tuple((_name(rng, set()), rng.choice(KINDS[:4]))
                              for _ in range(rng.randint(1, 3)))
        specs.append(FieldSpec(_name(rng, names), kind, rng.choice([0.0, 0.1, 0.3]),
                               late=index == 0 or rng.random() < 0.2, subfields=subfields))
    return specs


def _scalar(rng: random.Random, kind: str) -> t.Any:
    if kind == "string":
        return rng.choice(["alpha", "beta", "gamma", "délta", "€uro", "line\nbreak"]) + \
            str(rng.randint(0, 999))
    if kind == "integer":
        return rng.randint(-1000, 10**6)
    if kind == "number":
        return rng.randint(-4000, 4000) / 4  # exact in binary: no rounding in any target
    if kind == "boolean":
        return rng.random() < 0.5
    moment = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc) + \
        datetime.timedelta(seconds=rng.randint(0, 10**7))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(rng: random.Random, spec: FieldSpec) -> t.Any:
    if spec.kind == "object":
        return {name: _scalar(rng, kind) for name, kind in spec.subfields}
    if spec.kind == "array":
        return [{name: _scalar(rng, kind) for name, kind in spec.subfields}
                for _ in range(rng.randint(0, 3))]
    return _scalar(rng, spec.kind)


def _drifted(rng: random.Random, spec: FieldSpec, value: t.Any) -> t.Any:
    """The same value in another JSON type, as a real API's change would send it."""
    if spec.kind in ("integer", "number"):
        return str(value)
    if spec.kind == "string":
        return {"text": value}
    if spec.kind in ("object", "array"):
        return json.dumps(value)
    if spec.kind == "boolean":
        return "yes" if value else "no"
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    offset = datetime.timezone(datetime.timedelta(hours=rng.choice([-7, 2, 5])))
    return moment.astimezone(offset).isoformat()


class Drift:
    """Adds the seed's fields to records; the same record gets the same values every time."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._specs: dict[str, list[FieldSpec]] = {}

    def specs(self, stream: str, taken: t.Iterable[str]) -> list[FieldSpec]:
        if stream not in self._specs:
            self._specs[stream] = field_specs(self.seed, stream, taken)
        return self._specs[stream]

    def decorate(self, stream: str, record: dict, position: float) -> None:
        """Add the stream's fields to `record`, which sits at `position` (0..1) of its listing."""
        rng = random.Random(f"{self.seed}:{stream}:{record['id']}")
        for spec in self.specs(stream, record):
            if spec.late and position < LATE_FROM:
                continue
            if rng.random() < spec.null_share:
                record[spec.name] = None
                continue
            value = _value(rng, spec)
            if rng.random() < DRIFT_SHARE:
                value = _drifted(rng, spec, value)
            record[spec.name] = value
