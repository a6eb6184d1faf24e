"""``mailslot bench store``: ops/s committed durably, group commit against one transaction per op.

Each engine (SQLite in a temporary file, PostgreSQL in a temporary schema) runs the same workload
twice: ``--writers`` documents, each a task that submits one op, waits until it is durable, and
submits the next, for ``--seconds``. Once through a :class:`~mailslot.store.GroupCommitter` that
puts whatever is pending into one transaction, once through the same committer limited to one op
per transaction. Every run gets a fresh database; afterwards each document's stored version is
checked against the ops its writer got confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Callable

import msgspec

from mailslot.bench import Report, percentile
from mailslot.errors import StoreError
from mailslot.store import GroupCommitter, OpRecord, open_store, parse_url

__all__ = ["add_arguments", "run"]

_PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
_MODES = {"group commit": 1_000, "txn per op": 1}  # mode -> batch_limit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engines",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql (default both)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("MAILSLOT_BENCH_PG", _PG_DEFAULT),
        help=f"PostgreSQL database to use a temporary schema of (default {_PG_DEFAULT})",
    )
    parser.add_argument("--writers", type=int, default=64, help="concurrent documents (64)")
    parser.add_argument("--seconds", type=float, help="per run (default 5, --quick 2)")


def run(args: argparse.Namespace) -> Report:
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    report = Report(
        "store",
        ["engine", "mode", "writers", "ops", "ops/s", "mean batch", "p50 ms", "p99 ms", "speedup"],
    )
    report.meta.update(seconds_per_run=seconds, writers=args.writers)
    for engine in engines:
        try:
            rows = asyncio.run(_engine(engine, args.pg_url, args.writers, seconds))
        except StoreError as exc:
            report.notes.append(f"{engine} skipped: {exc}")
            continue
        base = rows[-1].rate
        for row in rows:
            report.add(
                engine=engine,
                mode=row.mode,
                writers=args.writers,
                ops=row.ops,
                speedup=row.rate / base if base else float("nan"),
                **{
                    "ops/s": row.rate,
                    "mean batch": row.mean_batch,
                    "p50 ms": row.p50 * 1000,
                    "p99 ms": row.p99 * 1000,
                },
            )
    report.notes.append(
        "each writer waits for its op to be durable before the next; SQLite: WAL, "
        "synchronous=FULL; PostgreSQL: synchronous_commit=on"
    )
    return report


class _Run(msgspec.Struct, frozen=True):
    mode: str
    ops: int
    rate: float  # ops/s
    mean_batch: float
    p50: float  # seconds
    p99: float


async def _engine(engine: str, pg_url: str, writers: int, seconds: float) -> list[_Run]:
    rows: list[_Run] = []
    for mode, batch_limit in _MODES.items():
        if engine == "sqlite":
            with tempfile.TemporaryDirectory(prefix="mailslot-bench-") as folder:
                url = f"sqlite:///{folder}/bench.db"
                rows.append(await _measure(url, mode, batch_limit, writers, seconds))
        elif engine == "postgresql":
            schema = f"mailslot_bench_{secrets.token_hex(6)}"
            url = f"{pg_url}{'&' if '?' in pg_url else '?'}schema={schema}"
            from mailslot.store.postgres import drop_schema

            try:
                rows.append(await _measure(url, mode, batch_limit, writers, seconds))
            finally:
                await drop_schema(parse_url(url).dsn, schema)
        else:
            raise StoreError(f"unknown engine {engine!r}; use sqlite or postgresql")
    return rows


async def _measure(
    url: str,
    mode: str,
    batch_limit: int,
    writers: int,
    seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> _Run:
    latencies: list[float] = []
    async with open_store(url) as store:
        async with GroupCommitter(store, batch_limit=batch_limit) as committer:
            deadline = clock() + seconds

            async def writer(doc: str) -> int:
                version = 0
                while clock() < deadline:
                    op = OpRecord(
                        collection="bench",
                        doc=doc,
                        version=version,
                        src="bench",
                        seq=version,
                        op=[version, "x"],
                        timestamp=1_700_000_000_000 + version,
                    )
                    started = clock()
                    await committer.submit(op)
                    latencies.append(clock() - started)
                    version += 1
                return version

            start = clock()
            counts = await asyncio.gather(*(writer(f"doc{i}") for i in range(writers)))
            elapsed = clock() - start
            stats = committer.statistics()
        for i, count in enumerate(counts):
            info = await store.document("bench", f"doc{i}")
            if (info.version if info else 0) != count:
                raise StoreError(f"bench: doc{i} stored {info} but {count} ops were confirmed")
    latencies.sort()
    total = sum(counts)
    return _Run(
        mode,
        total,
        total / elapsed,
        stats.mean_batch_size,
        percentile(latencies, 50),
        percentile(latencies, 99),
    )
