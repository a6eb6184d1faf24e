"""Hypothesis strategies for text-unicode: texts with astral characters, ops valid against them."""

from __future__ import annotations

from hypothesis import strategies as st

from mailslot.collab.ot import normalize

# One code point each: ASCII, accented letters, a combining mark, CJK, emoji (astral), other astral
# letters, a ZWJ (emoji sequences are several code points).
CHARACTERS = [
    *"abcxyz \n",
    *"éüñçøß",
    "\u0301",
    *"中文",
    *"😀🤖👻💃",
    *"𝔘𝕏𐍈🀄",
    "\u200d",
]
chars = st.sampled_from(CHARACTERS)
texts = st.text(chars, max_size=40)
inserts = st.text(chars, min_size=1, max_size=6)


@st.composite
def ops(draw: st.DrawFn, text: str, *, raw: bool = False) -> list:
    """A valid op against ``text``; normalized unless ``raw`` (then adjacent inserts or deletes
    may stay apart, as ``check`` allows; adjacent skips never)."""
    op: list = []
    n = len(text)
    pos = 0
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["skip", "insert", "delete"]))
        left = n - pos
        if kind == "skip" and left:
            k = draw(st.integers(1, left))
            if op and isinstance(op[-1], int):
                op[-1] += k
            else:
                op.append(k)
            pos += k
        elif kind == "insert":
            op.append(draw(inserts))
        elif kind == "delete" and left:
            k = draw(st.integers(1, min(left, 8)))
            op.append({"d": text[pos : pos + k] if draw(st.booleans()) else k})
            pos += k
    if op and isinstance(op[-1], int):
        op.pop()
    return op if raw else normalize(op)


@st.composite
def text_and_op(draw: st.DrawFn, *, raw: bool = False) -> tuple[str, list]:
    text = draw(texts)
    return text, draw(ops(text, raw=raw))


@st.composite
def text_and_two_ops(draw: st.DrawFn, *, raw: bool = False) -> tuple[str, list, list]:
    """A text and two concurrent ops against it."""
    text = draw(texts)
    return text, draw(ops(text, raw=raw)), draw(ops(text, raw=raw))


@st.composite
def messy_ops(draw: st.DrawFn, text: str) -> list:
    """A valid op against ``text`` with zero skips, empty inserts and empty deletes sprinkled in."""
    op = draw(ops(text, raw=True))
    noise = st.sampled_from([0, "", {"d": 0}, {"d": ""}])
    out: list = []
    for c in op:
        if draw(st.booleans()):
            out.append(draw(noise))
        out.append(c)
    return out
