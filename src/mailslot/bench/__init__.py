"""Benchmark harness: ``mailslot bench <suite>``.

Each suite is a module ``mailslot.bench.<suite>`` exposing::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...   # optional
    def run(args: argparse.Namespace) -> Report: ...

A suite runs mailslot and its peers (Pykka, ShareDB, the legacy engine, ...) in the same run and
reports ratios, because machines are noisy. The report prints as a table, or as one JSON object with
``--json``. Benchmarks report numbers; tests never assert a time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

__all__ = ["Report", "Suite", "available_suites", "format_number", "load_suite", "percentile"]


class Suite(Protocol):
    """What a benchmark module provides."""

    def run(self, args: argparse.Namespace) -> Report: ...


@dataclass
class Report:
    """The result of one suite run: a table of rows plus free-form notes.

    ``columns`` fixes the order of the table; each row maps column names to numbers or strings.
    """

    suite: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "columns": self.columns,
            "rows": self.rows,
            "notes": self.notes,
            "meta": {**machine_info(), **self.meta},
        }

    def render(self) -> str:
        cells = [[format_number(row.get(c, "")) for c in self.columns] for row in self.rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(self.columns)]
        lines = [
            f"mailslot bench {self.suite}",
            "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)),
            "  ".join("-" * w for w in widths),
        ]
        for r in cells:
            lines.append(
                "  ".join(
                    v.rjust(w) if _numeric(v) else v.ljust(w)
                    for v, w in zip(r, widths, strict=True)
                )
            )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-.") and text[-1] != ":"


def format_number(value: Any) -> str:
    """Three significant figures for floats, thousands separators for ints."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def available_suites() -> list[str]:
    here = os.path.dirname(__file__)
    return sorted(
        name[:-3] for name in os.listdir(here) if name.endswith(".py") and not name.startswith("_")
    )


def load_suite(name: str) -> Suite:
    """Import ``mailslot.bench.<name>``; a clear error for an unknown suite."""
    from mailslot.errors import ConfigError

    if name not in available_suites():
        raise ConfigError(
            f"unknown benchmark suite {name!r}; available: {', '.join(available_suites())}"
        )
    return cast(Suite, importlib.import_module(f"mailslot.bench.{name}"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every suite takes; a suite may add its own."""
    parser.add_argument("suite", help=f"one of: {', '.join(available_suites())}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a smaller run (under 30 s)")


def main(argv: Sequence[str], *, out: Callable[[str], None] = print) -> int:
    """Parse the suite name first, let the suite add its options, run it and print the report."""
    first = argparse.ArgumentParser(prog="mailslot bench", add_help=False)
    first.add_argument("suite", nargs="?")
    known, _ = first.parse_known_args(argv)
    parser = argparse.ArgumentParser(prog="mailslot bench", description="Run a benchmark suite.")
    add_arguments(parser)
    suite: Suite | None = None
    if known.suite and known.suite in available_suites():
        suite = load_suite(known.suite)
        extra = getattr(suite, "add_arguments", None)
        if extra is not None:
            extra(parser)
    args = parser.parse_args(argv)
    if suite is None:
        suite = load_suite(args.suite)
    report = suite.run(args)
    out(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    sys.stdout.flush()
    return 0
