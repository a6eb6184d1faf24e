"""The old engine: a threaded document service guarded by mutexes, kept for comparison and fallback.

- :mod:`mailslot.legacy.engine`: :class:`LegacyEngine`, the same document semantics as
  :class:`~mailslot.collab.document.DocumentActor`, served by worker threads and locks.
"""

from __future__ import annotations

from mailslot.legacy.engine import LegacyConfig, LegacyEngine, LegacyStatistics, mentions

__all__ = ["LegacyConfig", "LegacyEngine", "LegacyStatistics", "mentions"]
