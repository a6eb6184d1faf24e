"""Context set for the duration of one message, undone in the dispatcher.

A per-message instrumentation that makes something *current* while a handler runs (an
OpenTelemetry span, structlog context variables) sets it in ``message_begin``, in the
dispatcher's context. For a plain handler, ``message_end`` follows at once and undoes it. For a
coroutine handler the runtime creates the handler's task right after ``message_begin`` returns;
asyncio copies the current context into the task then, so the task keeps what was set, and the
dispatcher must not: ``message_end`` only comes when the task is done, from another context. So
the undo is kept on a stack, and ``batch`` (the end of the turn, back in the dispatcher) undoes
whatever the turn left set. A later ``message_end`` finds its scope already closed.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Scope", "ScopeStack"]


class Scope:
    """One message's undo action, until it has run."""

    __slots__ = ("undo",)

    def __init__(self, undo: Callable[[], None]) -> None:
        self.undo: Callable[[], None] | None = undo


class ScopeStack:
    """The scopes opened in the dispatcher during the current turn, innermost last."""

    __slots__ = ("_stack",)

    def __init__(self) -> None:
        self._stack: list[Scope] = []

    def open(self, undo: Callable[[], None]) -> Scope:
        """Remember ``undo`` for the message now beginning."""
        scope = Scope(undo)
        self._stack.append(scope)
        return scope

    def close(self, scope: Scope) -> None:
        """``message_end`` of a plain handler: undo ``scope`` (on top) if it is still open."""
        if scope.undo is not None:
            self._close_through(scope)

    def close_all(self) -> None:
        """The end of a turn: undo whatever is still open, innermost first."""
        if self._stack:
            self._close_through(None)

    def _close_through(self, target: Scope | None) -> None:
        stack = self._stack
        while stack:
            scope = stack.pop()
            undo, scope.undo = scope.undo, None
            if undo is not None:
                undo()
            if scope is target:
                return

    def __len__(self) -> int:
        return len(self._stack)
