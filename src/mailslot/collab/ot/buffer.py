"""A mutable text document that applies ``text-unicode`` ops in place without copying itself.

Theory of operation
-------------------
The text is a list of chunks (``str`` pieces of at most ``chunk_size`` code points, never empty)
plus a Fenwick tree over the chunk lengths, so the chunk holding a position is found, and a
chunk's length changed, in O(log chunks) steps. An edit rebuilds only the one chunk it lands in
(a copy of at most ``chunk_size`` code points), so an op on a 100k-character document costs about
what it costs on a 2k one.

Structure changes (a chunk grows past ``chunk_size`` and splits in pieces of about half of it, a
chunk empties, a small chunk merges into a neighbour, a delete spans several chunks) rebuild the
tree in O(chunks); they are rare (a chunk splits after about ``chunk_size / 2`` inserted
characters) or proportional to the text deleted.

:meth:`TextBuffer.apply` first checks the op against the buffer (well-formed, fits the length,
delete texts match) and only then edits, so a failing op leaves the buffer unchanged. It turns the
op into splices ``(position, deleted count, inserted text)`` in the coordinates of the document
before the op and performs them from the last to the first, so earlier positions stay valid.

A buffer belongs to one owner (the document actor); it is not shared between threads or tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailslot.errors import OTError

from .text import Component, check

__all__ = ["DEFAULT_CHUNK_SIZE", "TextBuffer"]

DEFAULT_CHUNK_SIZE = 2048
"""Largest chunk, in code points: small enough that rebuilding one is cheap, large enough that
a 100k-character document has well under a hundred of them."""


def _split(text: str, limit: int) -> list[str]:
    """``text`` in near-equal pieces of at most ``limit // 2`` (one piece if it fits ``limit``)."""
    n = len(text)
    if n <= limit:
        return [text] if n else []
    half = limit // 2
    k = -(-n // half)
    return [text[n * i // k : n * (i + 1) // k] for i in range(k)]


class TextBuffer:
    """A text document applying ``text-unicode`` ops in place; positions are code points.

    Args:
        text: the initial document.
        chunk_size: the largest chunk in code points (>= 2; small values are for tests).
    """

    __slots__ = ("_chunks", "_length", "_limit", "_min", "_top", "_tree")

    def __init__(self, text: str = "", *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if type(text) is not str:
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        if type(chunk_size) is not int or chunk_size < 2:
            raise ValueError(f"chunk_size must be an int >= 2, got {chunk_size!r}")
        self._limit = chunk_size
        self._min = max(1, chunk_size // 8)
        self._chunks = _split(text, chunk_size)
        self._rebuild()

    # -- the Fenwick tree over chunk lengths ------------------------------------------------------

    def _rebuild(self) -> None:
        chunks = self._chunks
        n = len(chunks)
        tree = [0]
        tree.extend(map(len, chunks))
        self._length = sum(tree)
        for i in range(1, n + 1):
            j = i + (i & -i)
            if j <= n:
                tree[j] += tree[i]
        self._tree = tree
        self._top = 1 << (n.bit_length() - 1) if n else 0

    def _find(self, pos: int) -> tuple[int, int]:
        """``(chunk index, offset)`` of ``pos``, with ``0 < offset <= len(chunk)`` unless pos is 0.

        A position on a chunk boundary belongs to the end of the chunk before it. Needs at least
        one chunk and ``0 <= pos <= len(self)``.
        """
        tree = self._tree
        n = len(tree) - 1
        idx = 0
        rem = pos
        step = self._top
        while step:
            nxt = idx + step
            if nxt <= n and tree[nxt] < rem:
                idx = nxt
                rem -= tree[nxt]
            step >>= 1
        return idx, rem

    # -- reading ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    def __str__(self) -> str:
        return "".join(self._chunks)

    def __repr__(self) -> str:
        return f"<TextBuffer {self._length} code points in {len(self._chunks)} chunks>"

    @property
    def chunk_count(self) -> int:
        """How many chunks hold the text (for statistics and tests)."""
        return len(self._chunks)

    def slice(self, start: int, end: int) -> str:
        """The text from ``start`` to ``end`` (code points, ``0 <= start <= end <= len``).

        Raises:
            OTError: if the range is not inside the document.
        """
        if not 0 <= start <= end <= self._length:
            raise OTError(f"slice [{start}, {end}) is outside the document ({self._length})")
        if start == end:
            return ""
        i, off = self._find(start)
        chunks = self._chunks
        first = chunks[i]
        if off + (end - start) <= len(first):
            return first[off : off + end - start]
        parts = [first[off:]]
        need = end - start - (len(first) - off)
        while need > 0:
            i += 1
            piece = chunks[i][:need]
            parts.append(piece)
            need -= len(piece)
        return "".join(parts)

    # -- editing ----------------------------------------------------------------------------------

    def apply(self, op: Sequence[Component], *, checked: bool = False) -> None:
        """Apply ``op`` in place (``checked=True``: the caller already ran :func:`check` on it).

        Raises:
            OTError: if ``op`` is malformed, skips or deletes past the end, or deletes a text
                that is not the one in the document; the buffer is then unchanged.
        """
        if not checked:
            check(op)
        n = self._length
        pos = 0
        done: list[tuple[int, int, str]] = []  # finished runs of inserts/deletes, as splices
        start = -1  # where the current run began, -1 if none
        deleted = 0
        inserted = ""
        for index, c in enumerate(op):
            if isinstance(c, int):
                if start >= 0:
                    done.append((start, deleted, inserted))
                    start = -1
                    deleted = 0
                    inserted = ""
                pos += c
                if pos > n:
                    raise OTError(
                        f"op: component {index} ({c}): skips to {pos}, past the end "
                        f"({n} characters)"
                    )
            elif isinstance(c, str):
                if start < 0:
                    start = pos
                inserted = inserted + c if inserted else c
            else:
                if start < 0:
                    start = pos
                d = c["d"]
                size = d if isinstance(d, int) else len(d)
                end = pos + size
                if end > n:
                    raise OTError(
                        f"op: component {index}: deletes up to {end}, past the end ({n} characters)"
                    )
                if isinstance(d, str) and self.slice(pos, end) != d:
                    raise OTError(
                        f"op: component {index}: deletes {d[:30]!r}, but the document has "
                        f"{self.slice(pos, end)[:30]!r} there"
                    )
                deleted += size
                pos = end
        # Last splice first: each one leaves the positions before it untouched.
        if start >= 0:
            self._splice(start, deleted, inserted)
        for at, count, text in reversed(done):
            self._splice(at, count, text)

    def _splice(self, pos: int, count: int, text: str) -> None:
        """Replace ``count`` code points at ``pos`` by ``text`` (already checked to fit)."""
        chunks = self._chunks
        if not chunks:  # empty document: pos == count == 0
            self._chunks = _split(text, self._limit)
            self._rebuild()
            return
        i, off = self._find(pos)
        chunk = chunks[i]
        if off == len(chunk) and count and i + 1 < len(chunks):
            i += 1  # a delete starting on a boundary starts in the next chunk
            off = 0
            chunk = chunks[i]
        if off + count <= len(chunk):
            new = chunk[:off] + text + chunk[off + count :]
            size = len(new)
            if 0 < size <= self._limit and (size >= self._min or not self._can_merge(i, size)):
                chunks[i] = new
                # the Fenwick update, inlined: this is the hot path
                delta = size - len(chunk)
                tree = self._tree
                top = len(tree) - 1
                i += 1
                while i <= top:
                    tree[i] += delta
                    i += i & -i
                self._length += delta
                return
            j = i
        else:
            j, off_end = self._find(pos + count)
            new = chunk[:off] + text + chunks[j][off_end:]
        self._replace(i, j, new)

    def _can_merge(self, i: int, size: int) -> bool:
        chunks = self._chunks
        return (i > 0 and len(chunks[i - 1]) + size <= self._limit) or (
            i + 1 < len(chunks) and len(chunks[i + 1]) + size <= self._limit
        )

    def _replace(self, i: int, j: int, new: str) -> None:
        """Replace chunks ``i..j`` by ``new``, split or merged with a neighbour as needed."""
        chunks = self._chunks
        if 0 < len(new) < self._min:
            if i > 0 and len(chunks[i - 1]) + len(new) <= self._limit:
                i -= 1
                new = chunks[i] + new
            elif j + 1 < len(chunks) and len(chunks[j + 1]) + len(new) <= self._limit:
                j += 1
                new = new + chunks[j]
        chunks[i : j + 1] = _split(new, self._limit)
        self._rebuild()
