"""Scopes opened per message are undone at message_end, or at the end of the turn."""

from __future__ import annotations

from mailslot.observe.scopes import ScopeStack


def test_plain_handler_scopes_close_at_once_and_turn_ends_close_the_rest() -> None:
    undone: list[str] = []
    stack = ScopeStack()
    plain = stack.open(lambda: undone.append("plain"))
    stack.close(plain)
    assert undone == ["plain"]
    coroutine = stack.open(lambda: undone.append("coroutine"))
    stack.open(lambda: undone.append("inner"))
    assert len(stack) == 2
    stack.close_all()  # the end of the turn: innermost first
    assert undone == ["plain", "inner", "coroutine"]
    stack.close(coroutine)  # its task finished later: nothing left to undo
    assert undone == ["plain", "inner", "coroutine"]
    assert len(stack) == 0
