"""The house stays one a newcomer can read: short modules, classes and functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tap_analytics"
LIMITS = {"module": 400, "class": 250, "function": 60}


def test_no_module_class_or_function_is_too_long() -> None:
    too_long = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines > LIMITS["module"]:
            too_long.append(f"{path.name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            kind = ("class" if isinstance(node, ast.ClassDef) else "function"
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None)
            if kind and node.end_lineno - node.lineno + 1 > LIMITS[kind]:
                too_long.append(f"{path.name}: {kind} {node.name} "
                                f"{node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_streams_reach_the_tap_through_a_typed_link() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        assert "self._tap" not in path.read_text(), path.name
