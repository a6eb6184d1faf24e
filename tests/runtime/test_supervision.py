"""The supervision decision is a pure function: values in, values out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.runtime import Directive, RestartHistory, SupervisorStrategy, decide


def test_restart_with_exponential_backoff_then_escalate() -> None:
    strategy = SupervisorStrategy(
        max_restarts=3, within=10, min_backoff=1, max_backoff=100, jitter=0
    )
    history = RestartHistory()
    delays = []
    for t in (0.0, 1.0, 2.0):
        decision, history = decide(strategy, history, ValueError(), now=t, random=0.0)
        assert decision.directive is Directive.RESTART
        delays.append(decision.delay)
    assert delays == [1.0, 2.0, 4.0]
    decision, history = decide(strategy, history, ValueError(), now=3.0, random=0.0)
    assert decision.directive is Directive.ESCALATE
    assert "3 restarts within 10s" in decision.reason


def test_exhausted_restarts_can_stop_instead_of_escalating() -> None:
    strategy = SupervisorStrategy(max_restarts=0, exhausted=Directive.STOP)
    decision, _ = decide(strategy, RestartHistory(), ValueError(), now=0, random=0)
    assert decision.directive is Directive.STOP
    with pytest.raises(ValueError, match="exhausted must be"):
        SupervisorStrategy(exhausted=Directive.RESUME)


def test_restarts_outside_the_window_are_forgotten() -> None:
    strategy = SupervisorStrategy(max_restarts=1, within=5, min_backoff=1, jitter=0)
    d1, h = decide(strategy, RestartHistory(), ValueError(), now=0.0, random=0.0)
    assert d1.directive is Directive.RESTART
    d2, h = decide(strategy, h, ValueError(), now=4.9, random=0.0)
    assert d2.directive is Directive.ESCALATE
    d3, h = decide(strategy, h, ValueError(), now=5.0, random=0.0)
    assert d3.directive is Directive.RESTART
    assert d3.delay == 1.0  # the backoff starts again with an empty window
    assert h.restarts == (5.0,)


def test_backoff_is_capped_and_jittered() -> None:
    strategy = SupervisorStrategy(max_restarts=10, min_backoff=1, max_backoff=3, jitter=0.5)
    history = RestartHistory((0.0, 0.1, 0.2, 0.3))
    decision, _ = decide(strategy, history, ValueError(), now=1.0, random=0.5)
    assert decision.delay == pytest.approx(3 * 1.25)


@pytest.mark.parametrize("directive", [Directive.RESUME, Directive.STOP, Directive.ESCALATE])
def test_fixed_directives_leave_history_alone(directive: Directive) -> None:
    history = RestartHistory((1.0,))
    decision, after = decide(
        SupervisorStrategy(directive=directive), history, KeyError(), now=2.0, random=0.1
    )
    assert decision.directive is directive
    assert after is history


def test_decider_function_chooses_by_error() -> None:
    def by_type(error: BaseException) -> Directive:
        return Directive.RESUME if isinstance(error, KeyError) else Directive.STOP

    strategy = SupervisorStrategy(directive=by_type)
    assert decide(strategy, RestartHistory(), KeyError(), now=0, random=0)[0].directive is (
        Directive.RESUME
    )
    assert decide(strategy, RestartHistory(), OSError(), now=0, random=0)[0].directive is (
        Directive.STOP
    )


def test_invalid_inputs_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        SupervisorStrategy(max_restarts=-1)
    with pytest.raises(ValueError, match="min_backoff <= max_backoff"):
        SupervisorStrategy(min_backoff=2, max_backoff=1)
    with pytest.raises(ValueError, match="random must be in"):
        decide(SupervisorStrategy(), RestartHistory(), ValueError(), now=0, random=1.0)


@given(
    max_restarts=st.integers(0, 6),
    within=st.floats(0.5, 100),
    times=st.lists(st.floats(0, 1000), max_size=30).map(sorted),
    rand=st.floats(0, 0.999),
)
def test_never_more_than_max_restarts_within_any_window(
    max_restarts: int, within: float, times: list[float], rand: float
) -> None:
    strategy = SupervisorStrategy(max_restarts=max_restarts, within=within, jitter=0.3)
    history = RestartHistory()
    restarted_at: list[float] = []
    for t in times:
        decision, history = decide(strategy, history, RuntimeError(), now=t, random=rand)
        assert decision.directive in (Directive.RESTART, Directive.ESCALATE)
        if decision.directive is Directive.RESTART:
            restarted_at.append(t)
            assert 0 <= decision.delay <= strategy.max_backoff * (1 + strategy.jitter)
    for t in restarted_at:
        in_window = [u for u in restarted_at if u <= t and t - u < within]
        assert len(in_window) <= max_restarts
