"""``mailslot bench runtime``: the actor runtime beside Pykka and a raw deque loop.

Workloads (all in one run, so the ratios compare like with like on a noisy machine):

- ``tell``: one producer actor tells 200k messages to one consumer, honouring SlowDown;
- ``send``: a coroutine outside any actor does ``await ref.send(m)`` 200k times;
- ``ask``: 20k sequential asks, round-trip p50 and p99;
- ``fan-in``: 8 producer actors to one consumer, 200k messages in all;
- ``ring``: 1,000 actors pass a token around for 100k hops;
- ``spawn``: 100k actors: time per spawn, and memory per idle actor (tracemalloc) after each
  has handled one message.

Pykka (threads and unbounded queues) runs the same workloads; it cannot hold 100k threads, so its
spawn row uses fewer actors and says so. The raw loop (``deque.append`` + ``popleft`` + a function
call per message) is the physical limit a deque mailbox can approach.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailslot.bench import Report, percentile
from mailslot.runtime import Actor, ActorRef, ActorSystem, Instrumentation
from mailslot.runtime.core import ACCELERATED

__all__ = ["add_arguments", "run"]


@dataclass(frozen=True)
class Sizes:
    tell: int
    asks: int
    fan_in: int
    ring_actors: int
    ring_hops: int
    spawn: int
    pykka_spawn: int


FULL = Sizes(200_000, 20_000, 200_000, 1_000, 100_000, 100_000, 2_000)
QUICK = Sizes(50_000, 3_000, 50_000, 200, 10_000, 20_000, 500)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-pykka", action="store_true", help="skip the Pykka peer (faster, no ratios)"
    )
    parser.add_argument(
        "--instrumentation",
        metavar="MODULE:FACTORY",
        help="also run every mailslot workload with this instrumentation installed "
        "(for example mailslot.observe:metrics_instrumentation) and report the cost",
    )


# ------------------------------------------------------------------------------ mailslot side


class Counter(Actor):
    def __init__(self, total: int, done: asyncio.Future[float]) -> None:
        self.total = total
        self.done = done
        self.count = 0

    def receive(self, message: Any) -> None:
        self.count += 1
        if self.count == self.total:
            self.done.set_result(time.perf_counter())


class Producer(Actor):
    """Tells ``n`` messages in bursts; pauses on SlowDown, carries on at Resume."""

    def __init__(self, target: ActorRef, n: int) -> None:
        self.target = target
        self.left = n
        self.paused = False
        self.go_pending = False

    def receive(self, message: Any) -> None:
        self.go_pending = False
        if self.paused:
            return
        tell = self.target.tell
        burst = min(self.left, 64)  # what the consumer handles per turn (the fairness budget)
        for i in range(burst):
            tell(i)
        self.left -= burst
        if self.left:
            self.go()

    def go(self) -> None:
        if not self.go_pending:
            self.go_pending = True
            self.context.self.tell(None)

    def slowed_down(self, target: ActorRef) -> None:
        self.paused = True

    def resumed(self, target: ActorRef) -> None:
        self.paused = False
        self.go()


class Echo(Actor):
    def receive(self, message: Any) -> None:
        self.context.reply(message)


class RingNode(Actor):
    def __init__(self, done: asyncio.Future[float]) -> None:
        self.next: ActorRef | None = None
        self.done = done

    def receive(self, message: Any) -> None:
        if isinstance(message, ActorRef):
            self.next = message
            return
        if message == 0:
            self.done.set_result(time.perf_counter())
            return
        assert self.next is not None
        self.next.tell(message - 1)


class Idle(Actor):
    def receive(self, message: Any) -> None:
        pass


def _system(instr: Instrumentation | None) -> ActorSystem:
    return ActorSystem("bench", instrumentation=instr)


async def ms_tell(n: int, instr: Instrumentation | None) -> float:
    async with _system(instr) as system:
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        consumer = system.spawn(lambda: Counter(n, done))
        producer = system.spawn(lambda: Producer(consumer, n))
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        producer.tell(None)
        return (await done) - t0


async def ms_send(n: int, instr: Instrumentation | None) -> float:
    async with _system(instr) as system:
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        consumer = system.spawn(lambda: Counter(n, done))
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        send = consumer.send
        for i in range(n):
            await send(i)
        return (await done) - t0


async def ms_ask(n: int, instr: Instrumentation | None) -> list[float]:
    async with _system(instr) as system:
        echo = system.spawn(Echo)
        await echo.ask(0, timeout=5)
        lat = []
        clock = time.perf_counter
        for i in range(n):
            t0 = clock()
            await echo.ask(i, timeout=5)
            lat.append(clock() - t0)
        return lat


async def ms_fan_in(n: int, senders: int, instr: Instrumentation | None) -> float:
    async with _system(instr) as system:
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        consumer = system.spawn(lambda: Counter(n, done))
        producers = [system.spawn(lambda: Producer(consumer, n // senders)) for _ in range(senders)]
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        for p in producers:
            p.tell(None)
        return (await done) - t0


async def ms_ring(actors: int, hops: int, instr: Instrumentation | None) -> float:
    async with _system(instr) as system:
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        nodes = [system.spawn(lambda: RingNode(done)) for _ in range(actors)]
        for i, node in enumerate(nodes):
            node.tell(nodes[(i + 1) % actors])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        nodes[0].tell(hops)
        return (await done) - t0


async def ms_spawn(n: int) -> tuple[float, float]:
    async with ActorSystem("bench", mailbox_capacity=16) as system:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        refs = [system.spawn(Idle) for _ in range(n)]
        # let every actor run its start step so the figure is for started, idle actors
        while not system.idle():  # noqa: ASYNC110 - the dispatcher runs between these yields
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - t0
        # an idle actor that has been used: each handles one message, so its mailbox exists
        for ref in refs:
            ref.tell(None)
        while not system.idle():  # noqa: ASYNC110 - the dispatcher runs between these yields
            await asyncio.sleep(0)
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        del refs
        return elapsed, used / n


# ----------------------------------------------------------------------------------- the limit


def raw_loop(n: int) -> float:
    """``deque.append`` + ``popleft`` + a call per message: what a deque mailbox can approach."""
    q: deque[int] = deque()
    count = [0]

    def handle(m: int) -> None:
        count[0] += 1

    t0 = time.perf_counter()
    for i in range(n):
        q.append(i)
        handle(q.popleft())
    return time.perf_counter() - t0


# -------------------------------------------------------------------------------------- runner


def _load_instrumentation(spec: str) -> Instrumentation:
    import importlib

    from mailslot.errors import ConfigError

    module, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr or "instrumentation")
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--instrumentation {spec!r}: cannot load it ({exc})") from exc
    instr = factory()
    if not isinstance(instr, Instrumentation):
        raise ConfigError(f"--instrumentation {spec!r} did not make an Instrumentation")
    return instr


def _run_fresh(runner: Callable[[Any], Any], fn: Callable[..., Any], *args: Any) -> Any:
    """Run a fresh coroutine ``fn(*args)`` on a fresh loop."""
    return runner(fn(*args))


def _best(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def run(args: argparse.Namespace) -> Report:
    sizes = QUICK if args.quick else FULL
    if not args.no_pykka:
        from mailslot.bench._pykka_peer import pk_ask, pk_fan_in, pk_ring, pk_spawn, pk_tell
    pykka = not args.no_pykka
    instr = _load_instrumentation(args.instrumentation) if args.instrumentation else None
    report = Report(
        "runtime",
        [
            "workload",
            "engine",
            "messages",
            "seconds",
            "per_sec",
            "ns_per_msg",
            "vs_pykka",
            "vs_raw",
        ],
    )
    loop_runner = _loop_runner()
    repeats = 1 if args.quick else 3
    raw = _best(max(7, repeats), lambda: raw_loop(sizes.tell))  # cheap, and noisy: more runs
    raw_ns = raw / sizes.tell * 1e9

    def add(
        workload: str, engine: str, n: int, seconds: float, pk: float | None, vs_raw: bool = True
    ) -> None:
        ns = seconds / n * 1e9
        report.add(
            workload=workload,
            engine=engine,
            messages=n,
            seconds=seconds,
            per_sec=n / seconds,
            ns_per_msg=ns,
            vs_pykka=(pk / seconds) if pk else None,
            vs_raw=(raw_ns / ns) if vs_raw else None,
        )

    report.add(
        workload="raw deque loop", engine="limit", messages=sizes.tell, seconds=raw,
        per_sec=sizes.tell / raw, ns_per_msg=raw_ns, vs_raw=1.0,
    )  # fmt: skip

    engines: list[tuple[str, Instrumentation | None]] = [("mailslot", None)]
    if instr is not None:
        engines.append((f"mailslot+{type(instr).__name__}", instr))

    # tell
    pk_t = _best(repeats, lambda: pk_tell(sizes.tell)) if pykka else None
    for name, ins in engines:
        t = _best(repeats, functools.partial(_run_fresh, loop_runner, ms_tell, sizes.tell, ins))
        add("tell 1->1", name, sizes.tell, t, pk_t)
    if pk_t:
        add("tell 1->1", "pykka", sizes.tell, pk_t, pk_t)
    for name, ins in engines:
        t = _best(repeats, functools.partial(_run_fresh, loop_runner, ms_send, sizes.tell, ins))
        add("await send 1->1", name, sizes.tell, t, pk_t)

    # ask
    pk_lat = sorted(pk_ask(sizes.asks)) if pykka else None
    for name, ins in engines:
        lat = sorted(loop_runner(ms_ask(sizes.asks, ins)))
        _ask_rows(report, name, lat, pk_lat)
    if pk_lat:
        _ask_rows(report, "pykka", pk_lat, pk_lat)

    # fan-in
    pk_f = _best(repeats, lambda: pk_fan_in(sizes.fan_in, 8)) if pykka else None
    for name, ins in engines:
        t = _best(
            repeats, functools.partial(_run_fresh, loop_runner, ms_fan_in, sizes.fan_in, 8, ins)
        )
        add("fan-in 8->1", name, sizes.fan_in, t, pk_f)
    if pk_f:
        add("fan-in 8->1", "pykka", sizes.fan_in, pk_f, pk_f)

    # ring
    pk_r = pk_ring(sizes.ring_actors, sizes.ring_hops) if pykka else None
    for name, ins in engines:
        t = _best(
            repeats,
            functools.partial(
                _run_fresh, loop_runner, ms_ring, sizes.ring_actors, sizes.ring_hops, ins
            ),
        )
        add(f"ring {sizes.ring_actors}", name, sizes.ring_hops, t, pk_r)
    if pk_r:
        add(f"ring {sizes.ring_actors}", "pykka", sizes.ring_hops, pk_r, pk_r)

    # spawn
    sp_t, sp_mem = loop_runner(ms_spawn(sizes.spawn))
    row: dict[str, Any] = {
        "workload": "spawn (idle actors)",
        "engine": "mailslot",
        "messages": sizes.spawn,
        "seconds": sp_t,
        "per_sec": sizes.spawn / sp_t,
        "ns_per_msg": sp_t / sizes.spawn * 1e9,
        "bytes_per_actor": sp_mem,
    }
    if pykka:
        pk_t2, pk_mem = pk_spawn(sizes.pykka_spawn)
        row["vs_pykka"] = (pk_t2 / sizes.pykka_spawn) / (sp_t / sizes.spawn)
        report.rows.append(row)
        report.add(
            workload="spawn (idle actors)", engine="pykka", messages=sizes.pykka_spawn,
            seconds=pk_t2, per_sec=sizes.pykka_spawn / pk_t2,
            ns_per_msg=pk_t2 / sizes.pykka_spawn * 1e9, bytes_per_actor=pk_mem, vs_pykka=1.0,
        )  # fmt: skip
        report.notes.append(
            f"pykka spawns {sizes.pykka_spawn:,} actors (one thread each; thread stacks are "
            "not in its bytes_per_actor); mailslot spawns "
            f"{sizes.spawn:,}"
        )
    else:
        report.rows.append(row)
    if "bytes_per_actor" not in report.columns:
        report.columns.append("bytes_per_actor")
    report.notes.append(
        "vs_pykka: speed relative to Pykka (higher is better; for ask, Pykka's latency over "
        "mailslot's); vs_raw: mailslot's speed relative to the raw deque loop"
    )
    core = "C (mailslot.runtime._speedups)" if ACCELERATED else "pure Python"
    report.notes.append(f"best of {repeats} runs; event loop: {_loop_name()}; runtime core: {core}")
    return report


def _ask_rows(report: Report, engine: str, lat: list[float], pk_lat: list[float] | None) -> None:
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    for label, value, pk_value in (
        ("ask p50", p50, percentile(pk_lat, 50) if pk_lat else None),
        ("ask p99", p99, percentile(pk_lat, 99) if pk_lat else None),
    ):
        report.add(
            workload=label,
            engine=engine,
            messages=len(lat),
            seconds=value,
            per_sec=1 / statistics.fmean(lat),
            ns_per_msg=value * 1e9,
            vs_pykka=(pk_value / value) if pk_value else None,
        )


def _loop_runner() -> Callable[[Any], Any]:
    try:
        import uvloop

        return lambda coro: uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is in the default extras
        return asyncio.run


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401

        return "uvloop"
    except ImportError:  # pragma: no cover
        return "asyncio"
