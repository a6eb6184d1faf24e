"""``mailslot bench cluster``: actors on two node processes through RabbitMQ.

One run, on this machine, broker included:

- *throughput*: this process (a client-only node) tells N small messages to entities whose shards
  are all consumed by a peer process (``python -m mailslot.bench.cluster peer``): batched frames,
  quorum queues, publisher confirms, acks after handling. The rate counts logical messages (a
  million; ``--messages``) until the peer has handled the last one;
- *latency at a quarter of peak*: the same path at a quarter of the measured rate, one-way latency
  measured in the peer (same machine, same clock);
- *ask round trip* across the two processes (request through a shard queue, reply through the
  asker's node queue);
- *baseline*: plain aio-pika, one AMQP message per logical message, same quorum queue kind and
  confirms (a window of 64), in this process;
- *collab*: two ``mailslot serve --broker`` nodes on PostgreSQL, K stock ShareDB clients (Node.js)
  over both, editing 100 documents; acknowledged ops per second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from mailslot.bench import Report, percentile
from mailslot.cluster.node import ClusterConfig, ClusterNode, EntityKind
from mailslot.cluster.transport import Names, QueueSettings
from mailslot.errors import MailboxFull
from mailslot.runtime import Actor, ActorSystem
from mailslot.wire import MessageRegistry

__all__ = ["add_arguments", "run"]

BROKER = "amqp://guest:guest@127.0.0.1:5672/"
PG = "postgresql://postgres@127.0.0.1:5432/test"


class Item(msgspec.Struct, frozen=True, tag="bench.item", array_like=True):
    key: str
    n: int
    sent_ns: int = 0


class Ping(msgspec.Struct, frozen=True, tag="bench.ping", array_like=True):
    key: str


class Pong(msgspec.Struct, frozen=True, tag="bench.pong", array_like=True):
    pass


class Query(msgspec.Struct, frozen=True, tag="bench.query", array_like=True):
    reset: bool = False


class Totals(msgspec.Struct, frozen=True, tag="bench.totals", array_like=True):
    received: int
    p50_us: float
    p99_us: float
    samples: int


REGISTRY = MessageRegistry("bench.cluster")
for _cls in (Item, Ping, Pong, Query, Totals):
    REGISTRY.register(_cls)


class _Counter:
    received = 0
    latencies: list[int] = []


class _Sink(Actor):
    def receive(self, message: Any) -> None:
        if isinstance(message, Item):
            _Counter.received += 1
            if message.sent_ns:
                _Counter.latencies.append(time.time_ns() - message.sent_ns)
        elif isinstance(message, Ping):
            self.context.reply(Pong())


class _Stats(Actor):
    def receive(self, message: Any) -> None:
        if isinstance(message, Query):
            lat = sorted(_Counter.latencies)
            self.context.reply(
                Totals(
                    _Counter.received,
                    percentile(lat, 50) / 1000 if lat else 0.0,
                    percentile(lat, 99) / 1000 if lat else 0.0,
                    len(lat),
                )
            )
            if message.reset:
                _Counter.received = 0
                _Counter.latencies = []


def _kind() -> EntityKind:
    return EntityKind(
        "sink",
        key_of=lambda m: m.key,
        handler=lambda _shard: _Sink(),
        replies=lambda m: isinstance(m, Ping),
    )


def _transport(broker: str, prefix: str) -> Any:
    from mailslot.cluster.amqp import AmqpTransport

    return AmqpTransport(broker, names=Names(prefix), settings=QueueSettings(shards=64))


async def _peer(broker: str, prefix: str) -> None:
    system = ActorSystem("peer")
    node = ClusterNode(
        system,
        _transport(broker, prefix),
        ClusterConfig("peer", join_wait=0.3, prefetch=64),
        registries=[REGISTRY],
        kinds=[_kind()],
    )
    await node.start()
    system.spawn(_Stats, name="stats")
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def stdin_closed() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(sys.stdin.fileno(), stdin_closed)
    await done
    await node.stop()
    await system.shutdown()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this suite."""
    parser.add_argument("--broker", default=BROKER, help=f"AMQP URL ({BROKER})")
    parser.add_argument("--db", default=PG, help=f"PostgreSQL for the collab case ({PG})")
    parser.add_argument("--messages", type=int, default=None, help="messages in the rate run")
    parser.add_argument("--clients", type=int, default=64, help="collab clients (64)")


async def _drive(args: argparse.Namespace, report: Report) -> None:
    prefix = f"msbench{secrets.token_hex(3)}"
    peer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailslot.bench.cluster",
        "peer",
        args.broker,
        prefix,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    system = ActorSystem("bench")
    node = ClusterNode(
        system,
        _transport(args.broker, prefix),
        ClusterConfig(
            "driver", hosts_shards=False, max_buffered=200_000, publish_window=256, batch_size=1000
        ),
        registries=[REGISTRY],
        kinds=[_kind()],
    )
    try:
        assert peer.stdout is not None
        async with asyncio.timeout(60):
            await peer.stdout.readline()
        await node.start()
        stats = node.ref("peer", "/user/stats")
        sink = node.entity_ref("sink")
        # warm up: every shard consumed by the peer, and answering
        for i in range(64):
            await sink.ask(Ping(f"w{i}"), timeout=30)
        await stats.ask(Query(reset=True), timeout=10)

        # a million: the sustained rate, not the ramp-up (confirm window, prefetch, first frames)
        n = args.messages or (60_000 if args.quick else 1_000_000)
        keys = [f"k{i}" for i in range(1024)]
        start = time.perf_counter()
        for i in range(n):
            item = Item(keys[i & 1023], i)
            try:
                sink.tell(item)
            except MailboxFull:
                await sink.send(item)
            if i & 4095 == 0:
                await asyncio.sleep(0)
        await _until_received(stats, n)
        seconds = time.perf_counter() - start
        peak = n / seconds
        report.add(case="logical msgs/s, 2 processes (batched, quorum, confirms)", value=peak)

        # latency at a quarter of the peak rate, then at lower offered rates: where p99 < 5 ms
        duration = 1.5 if args.quick else 3.0
        totals = await _latency_at(sink, stats, keys, peak / 4, duration)
        report.add(case="latency p50 at 1/4 peak (ms)", value=totals.p50_us / 1000)
        report.add(case="latency p99 at 1/4 peak (ms)", value=totals.p99_us / 1000)
        for rate in (1_000, 5_000, 20_000):
            if rate < peak / 4:
                totals = await _latency_at(sink, stats, keys, rate, duration / 2)
                report.add(case=f"latency p99 at {rate:,} msgs/s (ms)", value=totals.p99_us / 1000)

        rtts = []
        for i in range(100 if args.quick else 400):
            t = time.perf_counter()
            await sink.ask(Ping(keys[i & 1023]), timeout=10)
            rtts.append(time.perf_counter() - t)
        rtts.sort()
        report.add(case="ask round trip p50 (ms)", value=percentile(rtts, 50) * 1000)
        report.add(case="ask round trip p99 (ms)", value=percentile(rtts, 99) * 1000)

        base = await _baseline(args.broker, prefix, 2000 if args.quick else 5000)
        report.add(case="baseline: aio-pika unbatched msgs/s (quorum, confirms)", value=base)
        report.add(case="batched / unbatched", value=peak / base)
    finally:
        await node.stop()
        await system.shutdown()
        if peer.stdin is not None:
            peer.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await peer.wait()
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
        with contextlib.suppress(Exception):
            await _transport(args.broker, prefix).delete_topology()


async def _latency_at(
    sink: Any, stats: Any, keys: list[str], rate: float, duration: float
) -> Totals:
    """One-way latency of items told at ``rate`` per second (in 5 ms ticks) for ``duration``."""
    await stats.ask(Query(reset=True), timeout=10)
    tick = 0.005
    per_tick = max(1, int(rate * tick))
    sent = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < duration:
        now_ns = time.time_ns()
        for _ in range(per_tick):
            sink.tell(Item(keys[sent & 1023], sent, now_ns))
            sent += 1
        next_at = t0 + (sent / per_tick) * tick
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return await _until_received(stats, sent)


async def _until_received(stats: Any, count: int) -> Totals:
    for _ in range(30_000):  # 5 minutes at most
        totals: Totals = await stats.ask(Query(), timeout=30)
        if totals.received >= count:
            return totals
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the peer did not receive {count} messages")


async def _baseline(broker: str, prefix: str, count: int) -> float:
    import aio_pika

    name = f"{prefix}.baseline"
    conn = await aio_pika.connect(broker)
    try:
        pub = await conn.channel(publisher_confirms=True)
        sub = await conn.channel()
        await sub.set_qos(prefetch_count=200)
        queue = await sub.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        got = 0

        async def on_message(message: Any) -> None:
            nonlocal got
            await message.ack()
            got += 1
            if got == count and not done.done():
                done.set_result(None)

        await queue.consume(on_message)
        body = msgspec.msgpack.encode(Item("k", 1))
        start = time.perf_counter()
        pending: list[Any] = []
        for _ in range(count):
            pending.append(
                pub.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), name
                )
            )
            if len(pending) >= 64:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await asyncio.wait_for(done, 120)
        rate = count / (time.perf_counter() - start)
        await queue.delete(if_unused=False, if_empty=False)
        return rate
    finally:
        await conn.close()


async def _until_settled(bases: list[str], *, shards: int = 64, timeout: float = 60.0) -> None:
    """Until every node at ``bases`` (``http://host:port``) sees all of them live and every shard
    has its primary and its standby subscribed (their ``/healthz``)."""
    import urllib.request

    def health(base: str) -> dict[str, Any]:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as reply:
            body: dict[str, Any] = json.loads(reply.read())
        return body

    deadline = time.monotonic() + timeout
    while True:
        states = [(await asyncio.to_thread(health, b)).get("cluster") or {} for b in bases]
        holders = Counter(shard for s in states for shard in s.get("owned", ()))
        wanted = min(len(bases), 2)  # a shard's primary and its standby
        if all(len(s.get("live", ())) == len(bases) for s in states) and all(
            holders[shard] >= wanted for shard in range(shards)
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the collab nodes did not settle in {timeout:g} s: {states}")
        await asyncio.sleep(0.1)  # polling another process's state: nothing to wait on here


_ROOT = Path(__file__).resolve().parents[3]
_HAS_SHAREDB = (_ROOT / "js" / "node_modules" / "sharedb").exists()


async def _collab(args: argparse.Namespace, report: Report) -> None:
    root = _ROOT
    load = root / "js" / "cluster_load.js"
    if shutil.which("node") is None or not _HAS_SHAREDB:
        report.notes.append("collab case skipped: needs node and `make js/node_modules`")
        return
    from mailslot.store import parse_url
    from mailslot.store.postgres import drop_schema

    prefix = f"msbenchc{secrets.token_hex(3)}"
    schema = f"mailslot_bench_{secrets.token_hex(4)}"
    db = f"{args.db}{'&' if '?' in args.db else '?'}schema={schema}"
    procs = []
    urls = []
    try:
        for i in range(2):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mailslot.cli", "serve", "--port", "0", "--broker",
                args.broker, "--db", db, "--node-id", f"b{i}", "--cluster-prefix", prefix,
                "--log-level", "error", "--log-format", "json",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
            assert proc.stdout is not None
            async with asyncio.timeout(60):
                while "serving on" not in (line := (await proc.stdout.readline()).decode()):
                    if not line:
                        raise RuntimeError("a collab node did not start")
            urls.append(line.split("serving on", 1)[1].split()[0].replace("http", "ws") + "/ws")
        await _until_settled([u.removesuffix("/ws").replace("ws", "http", 1) for u in urls])
        ops = 5 if args.quick else 20
        config = {
            "urls": urls,
            "clients": args.clients,
            "docs": [f"doc{i}" for i in range(100)],
            "ops": ops,
            "pace_ms": 0,
            "timeout_ms": 120000,
        }
        out = await asyncio.to_thread(
            subprocess.run,
            ["node", str(load), json.dumps(config)],
            capture_output=True,
            cwd=root / "js",
            timeout=180,
        )
        result = json.loads(out.stdout.decode().strip().splitlines()[-1])
        if not result.get("ok"):
            report.notes.append(f"collab case failed: {result}")
            return
        acked = len(result["acked"])
        report.add(
            case=f"collab: {args.clients} clients / 2 nodes / 100 docs, acked ops/s",
            value=acked / result["seconds"],
        )
        report.notes.append(
            f"collab: {acked} ops acknowledged in {result['seconds']:.1f}s (setup included), "
            "every client converged"
        )
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
        with contextlib.suppress(Exception):
            await drop_schema(parse_url(db).dsn, schema)
        with contextlib.suppress(Exception):
            await _transport(args.broker, prefix).delete_topology()


def run(args: argparse.Namespace) -> Report:
    """Run the suite and return its report."""
    report = Report("cluster", ["case", "value"])

    async def main() -> None:
        await _drive(args, report)
        await _collab(args, report)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
    report.notes.append(
        "targets: >= 200,000 logical msgs/s; p99 < 5 ms at a quarter of peak (broker on the "
        "same 2 cores)"
    )
    report.notes.append(
        "latency is one-way, tell to handler, in 5 ms ticks over 1,024 keys on 64 shards: every "
        "tick publishes a frame to most shards, and the broker's CPU per frame (not per message) "
        "bounds the rate at which p99 stays low"
    )
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == ["peer"]:
        with contextlib.suppress(KeyboardInterrupt):
            try:
                import uvloop

                uvloop.run(_peer(sys.argv[2], sys.argv[3]))
            except ImportError:
                asyncio.run(_peer(sys.argv[2], sys.argv[3]))
    else:
        os._exit(2)
