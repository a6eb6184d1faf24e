"""A tiny server with live traffic, to look at ``/dashboard`` in a browser.

    .venv/bin/python bench/dashboard_demo.py [--port 8099] [--seconds 0]

Actor types it runs: ``Producer`` (steady traffic), ``Consumer`` (a coroutine handler that takes
a couple of milliseconds), ``Hot`` (fed faster than it drains, so its mailbox sits above the
high watermark and it is highlighted), ``Flaky`` (fails now and then and is restarted) and
``Lossy`` (a small mailbox that drops droppable messages: dead letters ``overflow``). A
``Meters`` object reports sessions and documents. ``--seconds N`` stops after N seconds (0: run
until interrupted). Not a test: the browser test (headless Chromium) starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from dataclasses import dataclass
from typing import Any

import uvicorn

from mailslot.meters import Meters
from mailslot.observe import MetricsInstrumentation, observe_app
from mailslot.runtime import Actor, ActorRef, ActorSystem, SupervisorStrategy, droppable


@droppable
@dataclass(frozen=True)
class Presence:
    n: int


class Consumer(Actor):
    async def receive(self, message: Any) -> None:
        await asyncio.sleep(random.uniform(0.0005, 0.003))


class Hot(Actor):
    mailbox_capacity = 200

    async def receive(self, message: Any) -> None:
        await asyncio.sleep(0.015)


class Flaky(Actor):
    def receive(self, message: Any) -> None:
        if random.random() < 0.02:
            raise RuntimeError("flaky")


class Lossy(Actor):
    mailbox_capacity = 8

    async def receive(self, message: Any) -> None:
        await asyncio.sleep(0.02)


class Producer(Actor):
    def __init__(self, targets: list[ActorRef]) -> None:
        self.targets = targets
        self.paused = False

    def started(self) -> None:
        self.context.start_periodic_timer("tick", "tick", 0.01)

    def receive(self, message: Any) -> None:
        if self.paused:
            return
        for t in self.targets:
            t.tell(random.random())

    def slowed_down(self, target: ActorRef) -> None:
        self.paused = True

    def resumed(self, target: ActorRef) -> None:
        self.paused = False


class Flooder(Actor):
    """Feeds ``Hot`` a little faster than it drains."""

    def __init__(self, hot: ActorRef) -> None:
        self.hot = hot

    def started(self) -> None:
        self.context.start_periodic_timer("tick", "tick", 0.01)

    def receive(self, message: Any) -> None:
        self.hot.tell(message)


async def main(port: int, seconds: float) -> None:
    metrics = MetricsInstrumentation()
    meters = Meters()
    async with ActorSystem(
        "dashboard-demo",
        instrumentation=metrics,
        outbox_capacity=10_000,
        supervisor=SupervisorStrategy(max_restarts=1_000_000, min_backoff=0.05),
    ) as system:
        consumers = [system.spawn(Consumer, name=f"consumer-{i}") for i in range(3)]
        flaky = system.spawn(Flaky, name="flaky")
        for i in range(2):
            system.spawn(lambda: Producer([*consumers, flaky]), name=f"producer-{i}")
        hot = system.spawn(Hot, name="hot")
        lossy = system.spawn(Lossy, name="lossy")
        system.spawn(lambda: Flooder(hot), name="flooder")
        meters.docs_open.set(3)
        app = observe_app(system, metrics, meters=meters, extra_gauges={"uptime_s": _uptime()})
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve())
        print(f"dashboard: http://127.0.0.1:{port}/dashboard", flush=True)
        try:
            elapsed = 0.0
            n = 0
            while seconds <= 0 or elapsed < seconds:
                await asyncio.sleep(0.05)
                elapsed += 0.05
                for _ in range(3):  # from outside any actor: what does not fit is dropped
                    n += 1
                    lossy.tell(Presence(n))
                meters.sessions.set(5 + n % 3)
        finally:
            server.should_exit = True
            await serving


def _uptime() -> Any:
    loop_start = asyncio.get_event_loop().time()
    return lambda: asyncio.get_event_loop().time() - loop_start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.seconds))
