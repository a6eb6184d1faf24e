"""Supervision decisions, as a pure function.

Theory of operation: when a child's handler raises, the runtime asks its parent's strategy for that
child what to do, by calling :func:`decide` with the strategy, the child's restart history, the
error, the current time and a uniform random number in [0, 1) (for jitter). :func:`decide` returns a
:class:`Decision` and the new history; it has no clock, no randomness and no I/O of its own, so
every outcome can be tested by feeding values in.

- ``RESUME``: keep the actor's state and go on with the next message (the failed one is not
  retried).
- ``RESTART``: make a fresh instance from the factory after a backoff delay; the mailbox is kept.
  Restarts within the strategy's window are counted; more than ``max_restarts`` escalates instead.
  The delay grows exponentially with the restarts in the window: ``min_backoff * 2**k``, capped at
  ``max_backoff``, then stretched by up to ``jitter`` (a fraction) so that many children failing at
  once do not restart in lock step.
- ``STOP``: stop the child.
- ``ESCALATE``: fail the parent with the child's error; the parent's own supervisor decides. Past
  the root, the system stops and raises the error to whoever awaits it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "Decision",
    "Directive",
    "RestartHistory",
    "SupervisorStrategy",
    "decide",
]


class Directive(enum.Enum):
    """What a supervisor does with a failed child."""

    RESUME = "resume"
    RESTART = "restart"
    STOP = "stop"
    ESCALATE = "escalate"


Decider = Callable[[BaseException], Directive]


@dataclass(frozen=True, slots=True)
class SupervisorStrategy:
    """A parent's policy for one child (or, as a default, for all of them).

    Args:
        directive: a fixed directive, or a function from the error to a directive.
        max_restarts: restarts allowed within ``within`` seconds before escalating.
        within: the length of the restart window, in seconds.
        min_backoff: the delay before the first restart in a window.
        max_backoff: the cap on the delay.
        jitter: the delay is multiplied by ``1 + jitter * r`` for a random ``r`` in [0, 1).
        exhausted: what to do once ``max_restarts`` is used up: escalate (the default) or stop
            the child (for entities that can come back on their next message, like documents).
    """

    directive: Directive | Decider = Directive.RESTART
    max_restarts: int = 3
    within: float = 60.0
    min_backoff: float = 0.05
    max_backoff: float = 5.0
    jitter: float = 0.2
    exhausted: Directive = Directive.ESCALATE

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.within <= 0:
            raise ValueError(f"within must be > 0 seconds, got {self.within}")
        if not 0 <= self.min_backoff <= self.max_backoff:
            raise ValueError(
                f"need 0 <= min_backoff <= max_backoff, got {self.min_backoff}, {self.max_backoff}"
            )
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")
        if self.exhausted not in (Directive.ESCALATE, Directive.STOP):
            raise ValueError(f"exhausted must be ESCALATE or STOP, got {self.exhausted}")

    def directive_for(self, error: BaseException) -> Directive:
        d = self.directive
        return d if isinstance(d, Directive) else d(error)


@dataclass(frozen=True, slots=True)
class RestartHistory:
    """When a child was restarted (the times of restarts still inside the window)."""

    restarts: tuple[float, ...] = field(default=())

    def within(self, now: float, window: float) -> RestartHistory:
        return RestartHistory(tuple(t for t in self.restarts if now - t < window))


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`; ``delay`` is the backoff before a restart (else 0)."""

    directive: Directive
    delay: float = 0.0
    reason: str = ""


def decide(
    strategy: SupervisorStrategy,
    history: RestartHistory,
    error: BaseException,
    *,
    now: float,
    random: float,
) -> tuple[Decision, RestartHistory]:
    """Decide what happens to a child that failed with ``error`` at time ``now``.

    Args:
        strategy: the parent's strategy for this child.
        history: the child's restart history so far.
        error: what the child raised.
        now: the current time in seconds (any monotonic origin).
        random: a uniform number in [0, 1) for the jitter.

    Returns:
        The decision and the history to keep for the next failure.
    """
    if not 0.0 <= random < 1.0:
        raise ValueError(f"random must be in [0, 1), got {random}")
    directive = strategy.directive_for(error)
    if directive is not Directive.RESTART:
        return Decision(directive, reason=f"strategy says {directive.value}"), history
    recent = history.within(now, strategy.within)
    count = len(recent.restarts)
    if count >= strategy.max_restarts:
        reason = (
            f"{count} restarts within {strategy.within:g}s "
            f"(max {strategy.max_restarts}): {strategy.exhausted.value}"
        )
        return Decision(strategy.exhausted, reason=reason), recent
    base = min(strategy.max_backoff, strategy.min_backoff * (2.0**count))
    delay = base * (1.0 + strategy.jitter * random)
    reason = f"restart {count + 1} of {strategy.max_restarts} within {strategy.within:g}s"
    return Decision(Directive.RESTART, delay, reason), RestartHistory((*recent.restarts, now))
