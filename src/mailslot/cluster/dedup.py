"""The settled message ids a node remembers, so that a redelivered envelope is skipped (pure).

Two generations of sets: ids go into the current one; when it holds ``window`` ids it becomes the
previous generation and the one before is dropped. Adding and looking up are O(1) whatever has
been forgotten before. (A dict used as a FIFO, ``del d[next(iter(d))]``, is not: CPython scans
the deleted slots at the front of the dict on every such call, so a node that had settled more
than its window got slower with every message until the dict was next resized.)
"""

from __future__ import annotations

__all__ = ["RecentIds"]


class RecentIds:
    """At least the last ``window`` ids added, and at most ``2 * window``.

    ``id in ids`` and :meth:`add` are the API. A hot loop may test ``id in ids.current or id in
    ids.previous`` instead (the same answer without a method call), reading both attributes at
    each test: :meth:`add` replaces them when a generation fills.
    """

    __slots__ = ("current", "previous", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"the dedup window must be at least 1 id, got {window}")
        self.window = window
        self.current: set[bytes] = set()
        self.previous: set[bytes] = set()

    def add(self, message_id: bytes) -> None:
        current = self.current
        current.add(message_id)
        if len(current) >= self.window:
            self.previous = current
            self.current = set()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.current or message_id in self.previous

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)
