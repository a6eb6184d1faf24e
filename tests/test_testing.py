"""The test kit itself: virtual clock, probes, settle, seeded scheduling."""

from __future__ import annotations

from typing import Any

import pytest

from mailslot.runtime import Actor
from mailslot.testing import TestKit, VirtualClock


def test_virtual_clock_fires_in_time_order_and_never_goes_back() -> None:
    clock = VirtualClock()
    fired: list[str] = []
    clock.call_later(2, fired.append, "b")
    clock.call_later(1, fired.append, "a")
    cancelled = clock.call_later(1.5, fired.append, "x")
    cancelled.cancel()
    assert clock.next_deadline() == 1
    clock.set_time(2)
    assert clock.fire_due() == 2
    assert fired == ["a", "b"]
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set_time(1)


async def test_probe_expect_reports_what_was_expected_and_what_came() -> None:
    class Echo(Actor):
        def receive(self, message: Any) -> None:
            self.context.reply(message)

    async with TestKit() as kit:
        probe = kit.probe("p")
        echo = kit.system.spawn(Echo)
        probe.tell(echo, "actual")
        with pytest.raises(AssertionError, match=r"/system/p expected 'wanted', got 'actual'"):
            await probe.expect("wanted")
        with pytest.raises(AssertionError, match=r"received no message within 3s.*expected a int"):
            await probe.expect(int, within=3)
        assert kit.clock.now() == pytest.approx(3)
        with pytest.raises(AssertionError, match="no message with a sender to reply to"):
            kit.probe().reply("x")


async def test_run_drives_virtual_time_for_a_coroutine() -> None:
    async with TestKit() as kit:

        async def wait_a_day() -> str:
            await kit.clock.sleep(86_400)
            return "morning"

        assert await kit.run(wait_a_day(), within=100_000) == "morning"
        assert kit.clock.now() == 86_400
        with pytest.raises(AssertionError, match="no result within 5s"):
            await kit.run(wait_a_day(), within=5)
