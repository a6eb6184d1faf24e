"""Pykka running the workloads of ``mailslot bench runtime`` (imported only when it runs)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

import pykka

__all__ = ["pk_ask", "pk_fan_in", "pk_ring", "pk_spawn", "pk_tell"]


def pk_tell(n: int) -> float:
    done: pykka.ThreadingFuture[None] = pykka.ThreadingFuture()

    class PCounter(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> None:
            self.count += 1
            if self.count == n:
                done.set(None)

    ref = PCounter.start()
    try:
        t0 = time.perf_counter()
        for i in range(n):
            ref.tell(i)
        done.get()
        return time.perf_counter() - t0
    finally:
        ref.stop()


def pk_ask(n: int) -> list[float]:

    class PEcho(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    ref = PEcho.start()
    try:
        ref.ask(0)
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            ref.ask(i, timeout=5)
            lat.append(time.perf_counter() - t0)
        return lat
    finally:
        ref.stop()


def pk_fan_in(n: int, senders: int) -> float:
    done: pykka.ThreadingFuture[None] = pykka.ThreadingFuture()

    class PCounter(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> None:
            self.count += 1
            if self.count == n:
                done.set(None)

    class PProducer(pykka.ThreadingActor):
        def __init__(self, target: Any) -> None:
            super().__init__()
            self.target = target

        def on_receive(self, message: Any) -> None:
            for i in range(message):
                self.target.tell(i)

    consumer = PCounter.start()
    producers = [PProducer.start(consumer) for _ in range(senders)]
    try:
        t0 = time.perf_counter()
        for p in producers:
            p.tell(n // senders)
        done.get()
        return time.perf_counter() - t0
    finally:
        for p in producers:
            p.stop()
        consumer.stop()


def pk_ring(actors: int, hops: int) -> float:
    done: pykka.ThreadingFuture[None] = pykka.ThreadingFuture()

    class PNode(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.next: Any = None

        def on_receive(self, message: Any) -> None:
            if isinstance(message, tuple):
                self.next = message[0]
            elif message == 0:
                done.set(None)
            else:
                self.next.tell(message - 1)

    nodes = [PNode.start() for _ in range(actors)]
    try:
        for i, node in enumerate(nodes):
            node.ask((nodes[(i + 1) % actors],))
        t0 = time.perf_counter()
        nodes[0].tell(hops)
        done.get()
        return time.perf_counter() - t0
    finally:
        pykka.ActorRegistry.stop_all()


def pk_spawn(n: int) -> tuple[float, float]:

    class PIdle(pykka.ThreadingActor):
        pass

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    refs = [PIdle.start() for _ in range(n)]
    elapsed = time.perf_counter() - t0
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    for r in refs:
        r.stop(block=False)
    pykka.ActorRegistry.stop_all()
    return elapsed, used / n
