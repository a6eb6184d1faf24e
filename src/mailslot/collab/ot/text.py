"""The plain-text OT type ``text-unicode``, compatible with the npm package ``ot-text-unicode`` 4.x.

Theory of operation
-------------------
An op is a list of components that walk the document from its start:

- an ``int`` n > 0 skips n characters,
- a ``str`` inserts it at the current position,
- ``{"d": n}`` deletes n characters, ``{"d": "text"}`` deletes that text (the text makes the op
  invertible; :func:`apply` checks that it matches the document).

Positions and lengths count Unicode code points (Python ``str`` indexing), as ``ot-text-unicode``
does (it converts JavaScript's UTF-16 offsets to code points with ``unicount``). An op needs no
trailing skip: whatever it does not reach is kept.

These are exactly the JSON shapes a ShareDB client sends, so a frame decoded by msgspec.json into
``list[int | str | dict[str, int | str]]`` can be passed straight to :func:`check`.

Validity (:func:`check`) is ``ot-text-unicode``'s ``checkOp`` plus what a server must not trust: no
empty inserts or deletes, skips > 0, no two adjacent skips, no trailing skip, and additionally no
``bool``/``float``/``None`` components, no delete object with keys other than ``"d"`` and no
UTF-16 surrogate code points in text (a JavaScript peer would count a lone surrogate differently,
so positions would drift apart). Like ``ot-text-unicode``, :func:`check` accepts adjacent inserts
or adjacent deletes (every function here handles them; :func:`normalize` merges them); pass
``strict=True`` to require a normalized op as well. Transform converges only for normalized ops:
with ``a = ["a", "b"]`` and ``b = ["X"]`` the two sides end at ``"abX"`` and ``"aXb"``, in
``ot-text-unicode`` as here, because a left insert goes first one component at a time. ShareDB
clients normalize before they send; a server should :func:`normalize` what it receives (or
check it with ``strict=True``) before transforming it.

:func:`transform`, :func:`compose`, :func:`transform_position`, :func:`invert`,
:func:`make_invertible` and :func:`normalize` are line-by-line ports of ``ot-text-unicode`` 4.0.0,
including its tie-breaking (on ``"left"`` an insert at the same place goes first) and the way it
merges components, so results are equal to the JavaScript ones component by component (the
agreement test replays thousands of random cases through both). :func:`apply` is stricter than
the JavaScript version, which silently truncates a delete that runs past the end and never
compares delete text: here both raise :class:`~mailslot.errors.OTError`.

Every function is pure: it never mutates its arguments and returns fresh lists and dicts. Nothing
here keeps state, so any caller may use it at any time. For large documents use
:class:`mailslot.collab.ot.buffer.TextBuffer`, which applies an op without copying the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, TypeAlias

from mailslot.errors import OTError

__all__ = [
    "TYPE_NAME",
    "TYPE_URI",
    "Component",
    "Op",
    "Selection",
    "Side",
    "SupportsSlice",
    "apply",
    "check",
    "compose",
    "insert",
    "invert",
    "invert_with_doc",
    "is_invertible",
    "is_noop",
    "make_invertible",
    "normalize",
    "remove",
    "strip_invertible",
    "transform",
    "transform_past",
    "transform_position",
    "transform_selection",
]

TYPE_URI = "http://sharejs.org/types/text-unicode"
TYPE_NAME = "text-unicode"

Component: TypeAlias = int | str | dict[str, int | str]
"""One op component: a skip, an insert, or a delete ``{"d": n}`` / ``{"d": "text"}``."""
Op: TypeAlias = list[Component]
Side: TypeAlias = Literal["left", "right"]
Selection: TypeAlias = int | list[int] | dict[str, object]
"""A cursor, an ``[anchor, focus]`` pair, or a ShareDB presence range ``{"index", "length"}``."""


class SupportsSlice(Protocol):
    """A document that hands out slices by code-point positions (``TextBuffer`` does)."""

    def __len__(self) -> int: ...

    def slice(self, start: int, end: int) -> str: ...


# UTF-16 surrogates cannot be counted the same way by a JavaScript peer (unicount counts a lone one
# as half of a pair), so text containing them is refused.
_SURROGATE = re.compile("[\ud800-\udfff]")
_KIND = {int: "skip", str: "insert", dict: "delete"}


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fault(what: str, index: int, component: object, problem: str) -> OTError:
    return OTError(f"{what}: component {index} ({_show(component)}): {problem}")


def _text_problem(text: str, kind: str) -> str | None:
    if not text:
        return f"{kind} must not be empty"
    if not text.isascii() and _SURROGATE.search(text):
        return f"{kind} must not contain a UTF-16 surrogate code point"
    return None


def _check(op: object, what: str, strict: bool = False) -> None:
    if type(op) is not list:
        raise OTError(f"{what} must be a list of components, got {type(op).__name__}")
    last: type | None = None
    for index, c in enumerate(op):
        t = type(c)
        if t is int:
            if c <= 0:
                raise _fault(what, index, c, "a skip must be > 0")
            if last is int:
                raise _fault(what, index, c, "adjacent skips must be combined into one")
        elif t is str:
            if problem := _text_problem(c, "an insert"):
                raise _fault(what, index, c, problem)
            if strict and last is str:
                raise _fault(what, index, c, "adjacent inserts must be combined (strict)")
        elif t is dict:
            if len(c) != 1 or "d" not in c:
                raise _fault(what, index, c, 'a delete must be an object with the single key "d"')
            d = c["d"]
            td = type(d)
            if td is int:
                if d <= 0:
                    raise _fault(what, index, c, "a delete must be of size > 0")
            elif td is str:
                if problem := _text_problem(d, "a delete"):
                    raise _fault(what, index, c, problem)
            else:
                raise _fault(what, index, c, f'"d" must be an int or a str, not {type(d).__name__}')
            if strict and last is dict:
                raise _fault(what, index, c, "adjacent deletes must be combined (strict)")
        else:
            raise _fault(
                what,
                index,
                c,
                f"a component must be an int (skip), str (insert) or {{'d': ...}} (delete), "
                f"not {t.__name__}",
            )
        last = t
    if last is int:
        raise _fault(what, len(op) - 1, op[-1], "an op must not end with a skip")


def check(op: object, *, strict: bool = False) -> None:
    """Raise :class:`~mailslot.errors.OTError` unless ``op`` is a well-formed op.

    Args:
        op: anything; typically a JSON array decoded from a client frame.
        strict: also refuse adjacent inserts and adjacent deletes, i.e. require the op to be
            normalized. ``ot-text-unicode`` accepts them, so the default does too.

    Raises:
        OTError: naming the component index and what is wrong with it.
    """
    _check(op, "op", strict)


def _dlen(d: int | str) -> int:
    return d if isinstance(d, int) else len(d)


def _clen(c: Component) -> int:
    if isinstance(c, int):
        return c
    if isinstance(c, str):
        return len(c)
    return _dlen(c["d"])


def _append(out: Op, c: Component | None) -> None:
    """``ot-text-unicode``'s makeAppend: drop no-ops, merge with a last component of its kind."""
    if isinstance(c, dict):
        d = c["d"]
        if not d:
            return
        last = out[-1] if out else None
        if isinstance(last, dict):
            ld = last["d"]
            # Two texts stay a text (invertible); anything else becomes a count.
            if isinstance(ld, str) and isinstance(d, str):
                out[-1] = {"d": ld + d}
            else:
                out[-1] = {"d": _dlen(ld) + _dlen(d)}
        else:
            out.append({"d": d})  # a copy: never alias the caller's objects
    elif isinstance(c, str):
        if not c:
            return
        last = out[-1] if out else None
        if isinstance(last, str):
            out[-1] = last + c
        else:
            out.append(c)
    elif c:
        last = out[-1] if out else None
        if isinstance(last, int):
            out[-1] = last + c
        else:
            out.append(c)


def _trim(out: Op) -> Op:
    if out and isinstance(out[-1], int):
        out.pop()
    return out


def _dslice(d: int | str, start: int, end: int | None = None) -> int | str:
    if isinstance(d, int):
        return d - start if end is None else min(d, end) - start
    return d[start:end]


class _Taker:
    """Walks an op and hands out pieces of it (``ot-text-unicode``'s makeTake).

    ``indivisible`` names the kind that is never split: ``str`` (inserts) in transform, ``dict``
    (deletes) in compose. Past its end, an op skips forever.
    """

    __slots__ = ("idx", "offset", "op")

    def __init__(self, op: Sequence[Component]) -> None:
        self.op = op
        self.idx = 0
        self.offset = 0  # into the current component, in code points

    def peek(self) -> Component | None:
        return self.op[self.idx] if self.idx < len(self.op) else None

    def take(self, n: int, indivisible: type) -> Component:
        """Up to ``n`` characters' worth of the op (an indivisible component comes whole)."""
        if self.idx == len(self.op):
            return n
        c = self.op[self.idx]
        offset = self.offset
        if isinstance(c, int):
            if c - offset <= n:
                self.idx += 1
                self.offset = 0
                return c - offset
            self.offset = offset + n
            return n
        if isinstance(c, str):
            if indivisible is str or len(c) - offset <= n:
                self.idx += 1
                self.offset = 0
                return c[offset:]
            self.offset = offset + n
            return c[offset : offset + n]
        d = c["d"]
        if indivisible is dict or _dlen(d) - offset <= n:
            self.idx += 1
            self.offset = 0
            return {"d": _dslice(d, offset)}
        self.offset = offset + n
        return {"d": _dslice(d, offset, offset + n)}

    def take_rest(self) -> Component | None:
        """The rest of the current component, or ``None`` at the end of the op."""
        if self.idx == len(self.op):
            return None
        c = self.op[self.idx]
        offset = self.offset
        self.idx += 1
        self.offset = 0
        if isinstance(c, int):
            return c - offset
        if isinstance(c, str):
            return c[offset:]
        return {"d": _dslice(c["d"], offset)}


def _carry(it: _Taker, out: Op, length: int, free: type) -> None:
    """Copy ``length`` characters' worth of ``it`` to ``out``.

    Components of kind ``free`` are taken whole and use up no length: inserts when transforming
    (they are not in the other op's document), deletes when composing (they are not in the
    second op's document).
    """
    while length > 0:
        c = it.take(length, free)
        _append(out, c)
        if not isinstance(c, free):
            length -= _clen(c)


def _drain(it: _Taker, out: Op) -> Op:
    """Append what is left of ``it`` to ``out`` and trim the result."""
    while (c := it.take_rest()) is not None:
        _append(out, c)
    return _trim(out)


def _valid_loose(c: Any) -> bool:
    """A component :func:`normalize` can take: like :func:`check`'s, but empty ones are allowed."""
    t = type(c)
    if t is int:
        return bool(c >= 0)
    if t is str:
        return _SURROGATE.search(c) is None
    if t is dict and len(c) == 1 and "d" in c:
        d = c["d"]
        return (type(d) is int and d >= 0) or (type(d) is str and _SURROGATE.search(d) is None)
    return False


def normalize(op: object) -> Op:
    """The canonical form of ``op``: no empty components, neighbours merged, no trailing skip.

    Zero skips, empty inserts and empty deletes are dropped, as ``ot-text-unicode`` does. Merging
    two text deletes keeps the text; merging a text delete with a counted one keeps the count.
    The result passes ``check(result, strict=True)``.

    Raises:
        OTError: if ``op`` is not a list, or a component is not a skip >= 0, an insert or a delete.
    """
    if type(op) is not list:
        raise OTError(f"op must be a list of components, got {type(op).__name__}")
    out: Op = []
    for index, c in enumerate(op):
        if not _valid_loose(c):
            raise _fault("op", index, c, "not a skip >= 0, an insert or a delete")
        _append(out, c)
    return _trim(out)


def apply(text: str, op: Sequence[Component]) -> str:
    """The document ``text`` after ``op``.

    Raises:
        OTError: if ``op`` is malformed, skips or deletes past the end of ``text``, or deletes a
            text that is not the one in the document.
    """
    _check(op, "op")
    n = len(text)
    pos = 0
    parts: list[str] = []
    for index, c in enumerate(op):
        if isinstance(c, int):
            end = pos + c
            if end > n:
                raise _fault("op", index, c, f"skips to {end}, past the end ({n} characters)")
            parts.append(text[pos:end])
            pos = end
        elif isinstance(c, str):
            parts.append(c)
        else:
            d = c["d"]
            end = pos + _dlen(d)
            if end > n:
                raise _fault("op", index, c, f"deletes up to {end}, past the end ({n} characters)")
            if isinstance(d, str) and not text.startswith(d, pos):
                raise _fault("op", index, c, f"the document has {_show(text[pos:end])} there")
            pos = end
    parts.append(text[pos:])
    return "".join(parts)


def transform(
    op: Sequence[Component], other: Sequence[Component], side: Side, *, checked: bool = False
) -> Op:
    """``op`` rewritten to apply after ``other`` (both made against the same document).

    Args:
        op: the op to transform.
        other: the op it is transformed past.
        side: ``"left"`` if ``op``'s inserts go first where both insert at the same place (the
            server transforms an incoming op ``"left"`` past the ops committed before it).
        checked: the caller knows both ops are well formed (skip their checks): a server
            transforming a checked op past the ops it committed, one after another.

    Raises:
        OTError: if either op is malformed or ``side`` is neither ``"left"`` nor ``"right"``.
    """
    left = _is_left(side)
    if not checked:
        _check(op, "op")
        _check(other, "other")
    if len(op) <= 2 and len(other) <= 2:
        fast = _transform_simple(op, other, left)
        if fast is not None:
            return fast
    return _transform_walk(op, other, left)


def _is_left(side: Side) -> bool:
    if side == "left":
        return True
    if side == "right":
        return False
    raise OTError(f"side must be 'left' or 'right', got {_show(side)}")


def _transform_walk(op: Sequence[Component], other: Sequence[Component], left: bool) -> Op:
    """:func:`transform` in general: walk ``other`` and take ``op`` along."""
    out: Op = []
    it = _Taker(op)
    for c2 in other:
        if isinstance(c2, int):
            _carry(it, out, c2, str)
        elif isinstance(c2, str):
            if left and isinstance(it.peek(), str):
                _append(out, it.take_rest())
            _append(out, len(c2))
        else:
            length = _dlen(c2["d"])
            while length > 0:
                c1 = it.take(length, str)
                if isinstance(c1, int):
                    length -= c1
                elif isinstance(c1, str):
                    _append(out, c1)
                else:  # deleted by both: nothing left to delete
                    length -= _dlen(c1["d"])
    return _drain(it, out)


def transform_past(
    op: Sequence[Component],
    others: Iterable[Sequence[Component]],
    side: Side,
    *,
    checked: bool = False,
) -> Op:
    """``op`` transformed past each of ``others`` in turn: what a server does with an op made
    against an older version, past the ops committed since (``transform`` folded, in one call).

    Args:
        op: the op to transform.
        others: ops applied one after another, the first made against the same document as op.
        side: as for :func:`transform`.
        checked: the caller knows every op is well formed (skip their checks).

    Raises:
        OTError: if an op is malformed or ``side`` is neither ``"left"`` nor ``"right"``.
    """
    left = _is_left(side)
    if not checked:
        _check(op, "op")
    out: Op = list(op)
    for other in others:
        if not checked:
            _check(other, "other")
        if len(out) <= 2 and len(other) <= 2:
            fast = _transform_simple(out, other, left)
            if fast is not None:
                out = fast
                continue
        out = _transform_walk(out, other, left)
    return out


def _simple(op: Sequence[Component]) -> tuple[int, str | dict[str, int | str]] | None:
    """``(position, component)`` for an op that is one insert or one delete, else ``None``."""
    if len(op) == 1:
        pos, c = 0, op[0]
    elif len(op) == 2 and type(op[0]) is int:
        pos, c = op[0], op[1]
    else:
        return None
    if type(c) is int:
        return None
    return pos, c  # type: ignore[return-value]


def _at(pos: int, c: Component) -> Op:
    return [pos, c] if pos else [c]


def _transform_simple(op: Sequence[Component], other: Sequence[Component], left: bool) -> Op | None:
    """:func:`transform` for two single-insert/single-delete ops (most edits are), without the
    general walk; the same result (a property test holds them equal)."""
    a = _simple(op)
    b = _simple(other)
    if a is None or b is None:
        return None
    p, ca = a
    q, cb = b
    if isinstance(cb, str):  # other inserts len(cb) at q
        m = len(cb)
        if isinstance(ca, str):
            return _at(p + m, ca) if q < p or (q == p and not left) else _at(p, ca)
        n = _dlen(ca["d"])
        if q <= p:
            return _at(p + m, ca)
        if q >= p + n:
            return _at(p, ca)
        d = ca["d"]  # the insert lands inside the deleted range: the delete goes around it
        return [*_at(p, {"d": _dslice(d, 0, q - p)}), m, {"d": _dslice(d, q - p)}]
    m = _dlen(cb["d"])  # other deletes [q, q + m)
    if isinstance(ca, str):
        if p <= q:
            return _at(p, ca)
        return _at(q, ca) if p < q + m else _at(p - m, ca)
    n = _dlen(ca["d"])
    if q + m <= p:
        return _at(p - m, ca)
    if q >= p + n:
        return _at(p, ca)
    d = ca["d"]  # overlapping deletes: what op deletes that other did not
    head = q - p if q > p else 0
    tail_from = q + m - p
    if isinstance(d, str):
        rest: int | str = d[:head] + (d[tail_from:] if tail_from < n else "")
        if not rest:
            return []
    else:
        rest = head + (n - tail_from if tail_from < n else 0)
        if rest == 0:
            return []
    return _at(min(p, q), {"d": rest})


def compose(a: Sequence[Component], b: Sequence[Component]) -> Op:
    """One op with the effect of ``a`` followed by ``b``.

    Raises:
        OTError: if either op is malformed.
    """
    _check(a, "a")
    _check(b, "b")
    out: Op = []
    it = _Taker(a)
    for c2 in b:
        if isinstance(c2, int):
            _carry(it, out, c2, dict)
        elif isinstance(c2, str):
            _append(out, c2)
        else:
            d = c2["d"]
            length = _dlen(d)
            offset = 0
            while offset < length:
                chunk = it.take(length - offset, dict)
                if isinstance(chunk, int):  # b deletes text that a kept
                    _append(out, {"d": _dslice(d, offset, offset + chunk)})
                    offset += chunk
                elif isinstance(chunk, str):  # b deletes what a inserted: both vanish
                    offset += len(chunk)
                else:
                    _append(out, chunk)
    return _drain(it, out)


def _position(cursor: int, op: Sequence[Component], is_own_op: bool) -> int:
    # ot-text-unicode's transformPosition. An own op also pushes a cursor sitting exactly where it
    # inserts (quill-delta's transformPosition without priority), so the author's caret follows
    # its own typing.
    pos = 0
    for c in op:
        if cursor < pos or (cursor == pos and not is_own_op):
            break
        if isinstance(c, int):
            pos += c
        elif isinstance(c, str):
            n = len(c)
            pos += n
            cursor += n
        else:
            cursor -= min(_dlen(c["d"]), cursor - pos)
    return cursor


def _position_arg(value: Any, name: str) -> int:
    if type(value) is not int or value < 0:
        raise OTError(f"{name} must be an int >= 0, got {_show(value)}")
    return value


def transform_position(pos: int, op: Sequence[Component], is_own_op: bool = False) -> int:
    """Where the cursor at ``pos`` is after ``op``.

    An insert exactly at ``pos`` leaves the cursor before it (``ot-text-unicode``), unless
    ``is_own_op``: the cursor's owner made the op, so the cursor moves past its own insert.

    Raises:
        OTError: if ``pos`` is not an int >= 0.
    """
    return _position(_position_arg(pos, "position"), op, is_own_op)


def transform_selection(
    sel: Selection, op: Sequence[Component], is_own_op: bool = False
) -> Selection:
    """A selection moved past ``op``, in the shape it came in (a pair comes back as a list).

    Accepts a cursor ``int``, an ``[anchor, focus]`` pair (``ot-text-unicode``'s
    transformSelection; the anchor may be after the focus) or a ShareDB presence range
    ``{"index": i, "length": n, ...}``, moved as the rich-text type's transformPresence moves it:
    both ends move, the other keys are kept. ``is_own_op`` as in :func:`transform_position`.

    Raises:
        OTError: if ``sel`` has none of these shapes or holds a negative position.
    """
    if type(sel) is int:
        return _position(_position_arg(sel, "selection"), op, is_own_op)
    if isinstance(sel, list | tuple):
        if len(sel) != 2:
            raise OTError(f"a selection pair must be [anchor, focus], got {_show(sel)}")
        return [_position(_position_arg(s, "selection end"), op, is_own_op) for s in sel]
    if isinstance(sel, dict):
        index = sel.get("index")
        length = sel.get("length")
        if type(index) is not int or type(length) is not int or index < 0 or index + length < 0:
            raise OTError(
                f'a presence range must be {{"index": int >= 0, "length": int}}, got {_show(sel)}'
            )
        start = _position(index, op, is_own_op)
        end = _position(index + length, op, is_own_op)
        return {**sel, "index": start, "length": end - start}
    raise OTError(
        'a selection must be an int, [anchor, focus] or {"index", "length"}, '
        f"got {type(sel).__name__}"
    )


def is_noop(op: Sequence[Component]) -> bool:
    """True if ``op`` changes nothing (a checked op is a no-op only when it is empty)."""
    return len(op) == 0


def is_invertible(op: Sequence[Component]) -> bool:
    """True if every delete in ``op`` carries the deleted text."""
    return all(not isinstance(c, dict) or isinstance(c["d"], str) for c in op)


def invert(op: Sequence[Component], *, checked: bool = False) -> Op:
    """The op that undoes ``op`` (to apply to the document ``op`` produced).

    ``checked=True`` skips the well-formedness check the caller has already made.

    Raises:
        OTError: if ``op`` is malformed or a delete does not carry its text; call
            :func:`make_invertible` with the document first.
    """
    if not checked:
        _check(op, "op")
    out: Op = []
    for index, c in enumerate(op):
        if isinstance(c, str):
            _append(out, {"d": c})
        elif isinstance(c, int):
            _append(out, c)
        else:
            d = c["d"]
            if not isinstance(d, str):
                raise _fault(
                    "op", index, c, "a delete without its text; call make_invertible(op, text)"
                )
            _append(out, d)
    return _trim(out)


def make_invertible(
    op: Sequence[Component], text: str | SupportsSlice, *, checked: bool = False
) -> Op:
    """``op`` with the deleted text written into each counted delete, read from ``text``.

    Args:
        op: an op made against ``text``.
        text: the document before ``op``: a ``str`` or anything with ``slice(start, end)``
            (a :class:`~mailslot.collab.ot.buffer.TextBuffer`).
        checked: the caller has already checked ``op`` (skip the check).

    Raises:
        OTError: if ``op`` is malformed or deletes past the end of ``text``.
    """
    if not checked:
        _check(op, "op")
    size = len(text)
    out: Op = []
    pos = 0
    for index, c in enumerate(op):
        if isinstance(c, int):
            pos += c
            _append(out, c)
        elif isinstance(c, str):
            _append(out, c)
        else:
            d = c["d"]
            if isinstance(d, int):
                if pos + d > size:
                    raise _fault("op", index, c, f"deletes past the end ({size} characters)")
                deleted = text[pos : pos + d] if isinstance(text, str) else text.slice(pos, pos + d)
                _append(out, {"d": deleted})
                pos += d
            else:
                _append(out, c)
                pos += len(d)
    return _trim(out)


def invert_with_doc(op: Sequence[Component], text: str | SupportsSlice) -> Op:
    """``invert(make_invertible(op, text))``: undo an op whose deletes are counted."""
    return invert(make_invertible(op, text))


def strip_invertible(op: Sequence[Component]) -> Op:
    """``op`` with each text delete replaced by its count (smaller on the wire and in the log)."""
    _check(op, "op")
    out: Op = []
    for c in op:
        if isinstance(c, dict) and isinstance(c["d"], str):
            _append(out, {"d": len(c["d"])})
        else:
            _append(out, c)
    return _trim(out)


def insert(pos: int, text: str) -> Op:
    """The op inserting ``text`` at ``pos`` (``ot-text-unicode``'s ``insert`` helper)."""
    if not text:
        return []
    return [text] if pos == 0 else [pos, text]


def remove(pos: int, deleted: int | str) -> Op:
    """The op deleting ``deleted`` (a count or the text) at ``pos`` (the ``remove`` helper)."""
    if _dlen(deleted) == 0:
        return []
    return [{"d": deleted}] if pos == 0 else [pos, {"d": deleted}]
