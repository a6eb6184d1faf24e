"""Operational transformation for plain text: the ``text-unicode`` type of ShareDB.

:mod:`~mailslot.collab.ot.text` holds the pure functions on ops (``check``, ``apply``,
``transform``, ``compose``, ...), compatible with the npm ``ot-text-unicode`` 4.x;
:mod:`~mailslot.collab.ot.buffer` holds :class:`TextBuffer`, the mutable document a document
actor keeps and edits in place.
"""

from __future__ import annotations

from .buffer import DEFAULT_CHUNK_SIZE, TextBuffer
from .text import (
    TYPE_NAME,
    TYPE_URI,
    Component,
    Op,
    Selection,
    Side,
    SupportsSlice,
    apply,
    check,
    compose,
    insert,
    invert,
    invert_with_doc,
    is_invertible,
    is_noop,
    make_invertible,
    normalize,
    remove,
    strip_invertible,
    transform,
    transform_past,
    transform_position,
    transform_selection,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "TYPE_NAME",
    "TYPE_URI",
    "Component",
    "Op",
    "Selection",
    "Side",
    "SupportsSlice",
    "TextBuffer",
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
