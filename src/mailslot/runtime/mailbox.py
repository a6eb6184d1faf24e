"""Mailbox kinds.

A mailbox is a FIFO of ``(message, meta)`` items, where ``meta`` is the sender's ref, an
:class:`~mailslot.runtime.messages.Envelope`, or ``None``. The default is a plain
``collections.deque``: append and popleft are O(1) and run in C, which is the runtime's fast path.

:class:`Coalescing` makes a mailbox in which the latest message per key replaces an older one that
has not been handled yet, keeping the older one's place in line (presence-like traffic: only the
latest cursor of each user matters). Messages whose key is ``None`` never coalesce. A replaced
message becomes a dead letter with reason ``coalesced``, unless the mailbox has a ``merge``: then
``merge(older, newer)`` takes the older one's place and nothing is dropped (for messages whose
senders are owed something for each of them, such as an acknowledgement).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

__all__ = ["Coalescing", "CoalescingQueue", "Item"]

Item = tuple[Any, Any]


@dataclass(frozen=True, slots=True)
class Coalescing:
    """Mailbox option: coalesce messages by ``key(message)`` (``None`` means never).

    A message whose key matches a queued one takes that one's place, and the older one becomes a
    dead letter (reason ``coalesced``). With ``merge``, ``merge(older, newer)`` takes the place
    instead (with the newer one's sender) and nothing is dropped.
    """

    key: Callable[[Any], Hashable | None]
    merge: Callable[[Any, Any], Any] | None = None


class _Unique:
    __slots__ = ()


class CoalescingQueue:
    """A deque-like FIFO where a newer item with the same key replaces the queued one.

    ``append`` returns the replaced item (for the dead-letter record) or ``None``.
    """

    __slots__ = ("_items", "_key", "_merge")

    def __init__(
        self,
        key: Callable[[Any], Hashable | None],
        merge: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self._key = key
        self._merge = merge
        self._items: OrderedDict[Hashable, Item] = OrderedDict()

    def append(self, item: Item) -> Item | None:
        """Queue ``item``; the item it replaced, if any (never with a ``merge``)."""
        k = self._key(item[0])
        if k is None:
            self._items[_Unique()] = item
            return None
        old = self._items.get(k)
        if old is not None and self._merge is not None:
            self._items[k] = (self._merge(old[0], item[0]), item[1])
            return None
        self._items[k] = item  # an existing key keeps its position
        return old

    def popleft(self) -> Item:
        return self._items.popitem(last=False)[1]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Any:
        return iter(list(self._items.values()))
