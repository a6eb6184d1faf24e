"""Tools to move a lock-based service onto actors: lock profiling and the engine cutover.

- :mod:`mailslot.migrate.locks`: the lock profiler and lock-order checker (``mailslot lockprof``).
- :mod:`mailslot.migrate.lockstats`: its pure core (order graph, histograms, the report).
- :mod:`mailslot.migrate.lockprof`: the ``mailslot lockprof`` command.
- :mod:`mailslot.migrate.workloads`: threaded workloads behind ``mailslot bench locks``.
- :mod:`mailslot.migrate.flags`: which engine serves a document (pure flag evaluation).
- :mod:`mailslot.migrate.cutover`: the router that applies the flags at run time, moves documents
  between engines between ops, and runs the shadow comparison.
- :mod:`mailslot.migrate.cutover_http`: ``GET``/``PUT /api/cutover``, ``mailslot cutover``, and the
  engine options of ``mailslot serve``.
"""

from __future__ import annotations

from mailslot.migrate.flags import Decision, Engine, FlagConfig, evaluate, parse_config
from mailslot.migrate.locks import LockProfiler, profile_call
from mailslot.migrate.lockstats import LockReport

__all__ = [
    "Decision",
    "Engine",
    "FlagConfig",
    "LockProfiler",
    "LockReport",
    "evaluate",
    "parse_config",
    "profile_call",
]
