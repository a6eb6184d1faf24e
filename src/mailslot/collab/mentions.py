"""Finding the ``@name`` mentions an op creates (pure).

Theory of operation
-------------------
A mention is ``@`` followed by a user name (:data:`~mailslot.collab.access.NAME_PATTERN`, without
a trailing ``.``), where the ``@`` does not follow a name character (so ``ann@example.com`` is not
one) and the name is *complete*: followed by a character that cannot continue it, or by the end
of the document. Completeness is what lets a mention typed one character at a time (``@``, ``b``,
``o``, ``b``, space) be found when it is finished. Typed in the middle of a line just before a
space, every prefix (``@b``, ``@bo``) is complete too: those are candidates that the dispatcher
drops unless such a user exists.

An op creates a mention when the text around the places it edits holds more mentions of a name
after the op than before. :func:`edit_sites` walks a text-unicode op and gives, for each insert or
delete, its position in the old and in the new text; :func:`site_windows` cuts a window of
``width`` characters around each site (from the old text with ``old=True``, from the new text
otherwise) and :func:`count_mentions` counts the complete mentions in windows. The document actor
counts before it applies an op and after, and the difference is what the op created: typing a
space after an existing ``@bob`` creates nothing, typing ``@bob`` into a sentence creates one, and
pasting a paragraph with three mentions creates three. A window that does not reach the start or
the end of the document ignores a mention it cannot see whole.

Which names are users is not decided here: the notification dispatcher looks them up.

Pure: standard library and :mod:`mailslot.errors` only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

__all__ = [
    "MENTION",
    "Mentioned",
    "Site",
    "Window",
    "count_mentions",
    "created_mentions",
    "edit_sites",
    "excerpt",
    "mentions_created",
    "scan_op",
    "site_windows",
]

_NAME_CHARS: Final = "A-Za-z0-9_.\\-"
#: ``@`` and a run of name characters (the run is trimmed of trailing dots)
MENTION: Final = re.compile(rf"@([A-Za-z0-9][{_NAME_CHARS}]*)")
_NAME_CHAR: Final = re.compile(rf"[{_NAME_CHARS}@]")
_MAX_NAME: Final = 32


class Mentioned(msgspec.Struct, frozen=True, kw_only=True):
    """A committed op at ``version`` of ``collection/doc`` by ``author`` created mentions of
    ``names`` (``excerpts`` holds a line of context for each, in the same order)."""

    collection: str
    doc: str
    version: int
    author: str | None
    names: tuple[str, ...]
    excerpts: tuple[str, ...]


def scan_op(
    op: Sequence[Any], slice_text: Callable[[int, int], str], length: int
) -> tuple[list[Site], list[Window]] | None:
    """Before applying ``op``: its sites and old windows, or ``None`` if it cannot create a
    mention (no ``@`` near any edit nor in what it inserts). Cheap: a slice per edit."""
    sites = edit_sites(op)
    before = site_windows(sites, slice_text, length, old=True)
    if any("@" in w.text for w in before) or any(isinstance(c, str) and "@" in c for c in op):
        return sites, before
    return None


def mentions_created(
    scan: tuple[list[Site], list[Window]], slice_text: Callable[[int, int], str], length: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """After applying the op that :func:`scan_op` saw: the names it created, with excerpts."""
    sites, before = scan
    after = site_windows(sites, slice_text, length, old=False)
    names = created_mentions(count_mentions(before), count_mentions(after))
    return names, tuple(excerpt(after, n) for n in names)


@dataclass(frozen=True, slots=True)
class Site:
    """One edit of an op: at ``old`` in the old text, ``deleted`` characters gave way to
    ``inserted`` characters at ``new`` in the new text."""

    old: int
    new: int
    deleted: int
    inserted: int


@dataclass(frozen=True, slots=True)
class Window:
    """A piece of text; ``cut_start``/``cut_end``: it does not reach that end of the document."""

    text: str
    cut_start: bool
    cut_end: bool


def edit_sites(op: Sequence[Any]) -> list[Site]:
    """The inserts and deletes of a (valid) text-unicode op, with old and new positions."""
    sites: list[Site] = []
    old = new = 0
    for c in op:
        if isinstance(c, int):
            old += c
            new += c
        elif isinstance(c, str):
            n = len(c)
            sites.append(Site(old, new, 0, n))
            new += n
        else:
            d = c["d"]
            n = d if isinstance(d, int) else len(d)
            sites.append(Site(old, new, n, 0))
            old += n
    return sites


def site_windows(
    sites: Iterable[Site],
    slice_text: Callable[[int, int], str],
    length: int,
    *,
    old: bool,
    width: int = 64,
) -> list[Window]:
    """A window of ``width`` characters each side of every site, in the old or the new text.

    Args:
        sites: from :func:`edit_sites`.
        slice_text: ``slice_text(start, end)`` gives that part of the text.
        length: the text's length.
        old: cut from the text before the op (else after it).
        width: characters kept on each side of an edit.
    """
    windows: list[Window] = []
    for s in sites:
        pos, span = (s.old, s.deleted) if old else (s.new, s.inserted)
        start = max(0, pos - width)
        end = min(length, pos + span + width)
        windows.append(Window(slice_text(start, end), start > 0, end < length))
    return windows


def count_mentions(windows: Iterable[Window]) -> Counter[str]:
    """The complete mentions in ``windows``, by name."""
    found: Counter[str] = Counter()
    for w in windows:
        text = w.text
        for m in MENTION.finditer(text):
            at = m.start()
            if at == 0 and w.cut_start:
                continue  # cannot see what precedes the '@'
            if at > 0 and _NAME_CHAR.match(text, at - 1):
                continue  # part of a word or an address
            end = m.end()
            if end == len(text) and w.cut_end:
                continue  # cannot see whether the name goes on
            name = m.group(1).rstrip(".")
            if name and len(name) <= _MAX_NAME:
                found[name] += 1
    return found


def created_mentions(before: Counter[str], after: Counter[str]) -> tuple[str, ...]:
    """The names mentioned more often after an op than before it, sorted."""
    return tuple(sorted(after - before))


def excerpt(windows: Sequence[Window], name: str, *, limit: int = 120) -> str:
    """A line of context around the first mention of ``name`` in ``windows``."""
    needle = "@" + name
    for w in windows:
        i = w.text.find(needle)
        if i < 0:
            continue
        half = max(0, (limit - len(needle)) // 2)
        start = max(0, i - half)
        end = min(len(w.text), i + len(needle) + half)
        text = " ".join(w.text[start:end].split())
        prefix = "…" if start > 0 or w.cut_start else ""
        suffix = "…" if end < len(w.text) or w.cut_end else ""
        return f"{prefix}{text}{suffix}"
    return needle
