"""The SQLite store (the default): stdlib ``sqlite3`` driven from one dedicated writer thread.

Theory of operation: ``sqlite3`` blocks, so every call runs on a thread of its own, never on the
event loop. A write transaction is one plain function (``BEGIN IMMEDIATE``, read what the batch
touches, :func:`~mailslot.store.plan.plan_commit`, write, ``COMMIT``) that runs on the *writer*
thread, so a group commit of any size costs one hop between the loop and the thread. (aiosqlite
would hop once per statement, and adds a dependency for less control.) Each thread is a
single-worker executor that owns its connection: the connection is made, used and closed on that
thread only, so no lock is needed anywhere.

A file database runs in WAL mode with a second, read-only connection on a *reader* thread, so loads
and history reads never queue behind commits (WAL readers see the last committed state and do not
block the writer). ``:memory:`` has one connection, so reads share the writer thread.

Durability: ``synchronous=FULL``, so WAL is fsynced at each commit and a confirmed commit survives
power loss, not only a crash of the process. Group commit pays that fsync once per batch.
``busy_timeout`` lets several processes share a file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from mailslot.errors import StoreError
from mailslot.store.base import (
    INSERT_OP,
    SELECT_HEAD,
    UPSERT_HEAD,
    UPSERT_SNAPSHOT,
    Row,
    Store,
    check_snapshot_fits,
    distinct_docs,
    encode_op,
    head_row,
    snapshot_row,
    translated,
)
from mailslot.store.migrations import MIGRATIONS, Migration, pending_migrations
from mailslot.store.plan import OpKey, plan_commit
from mailslot.store.records import CommitResult, DocKey, OpRecord, Snapshot

__all__ = ["MEMORY", "SqliteStore"]

MEMORY = ":memory:"

_P = ParamSpec("_P")
_T = TypeVar("_T")

# What a batch touches, read in one statement per chunk rather than one per op: each statement is
# a hop of the GIL between the writer thread and the busy event loop thread (up to a switch
# interval, 5 ms, each), so a commit of 80 ops read one by one took 25 ms under load.
_SELECT_STORED = (
    "WITH k(c, d, s, q) AS (VALUES {keys}) SELECT ops.collection, ops.doc, ops.src, ops.seq, "
    "ops.version FROM k JOIN ops ON ops.collection = k.c AND ops.doc = k.d AND ops.src = k.s "
    "AND ops.seq = k.q"
)
_SELECT_HEADS = (
    "WITH k(c, d) AS (VALUES {keys}) SELECT documents.collection, documents.doc, "
    "documents.version FROM k JOIN documents ON documents.collection = k.c AND documents.doc = k.d"
)
_CHUNK = 500  # keys per statement (4 parameters each; SQLite takes up to 32,766)
_BUSY_TIMEOUT_MS = 5000


def _lookup(
    conn: sqlite3.Connection, query: str, keys: Sequence[tuple[Any, ...]], width: int
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` (with ``{keys}`` a VALUES list) for ``keys``, in chunks."""
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        values = ",".join(["(" + ",".join("?" * width) + ")"] * len(chunk))
        yield from conn.execute(query.format(keys=values), [x for key in chunk for x in key])


def _translated(what: str) -> AbstractContextManager[None]:
    return translated((sqlite3.Error,), f"SQLite {what}")


def _switch_to_wal(conn: sqlite3.Connection) -> object:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the file.

    Switching a new file to WAL needs it to itself and SQLite answers "database is locked" at once
    rather than waiting (``busy_timeout`` does not cover it), which happens when two processes
    create the database together. This waits as ``busy_timeout`` would, on the writer thread.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class SqliteStore(Store):
    """The op log and snapshots in one SQLite file (or in memory).

    Args:
        path: the database file (its directory is created), or ``":memory:"``.
        migrations: the schema's migrations (all of them by default).
    """

    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = str(path)
        self._migrations = tuple(migrations)
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        # Each connection is touched only on its own executor's thread.
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    @property
    def in_memory(self) -> bool:
        """Whether the database lives in memory (gone when closed)."""
        return self.path == MEMORY

    async def open(self) -> None:
        if self._writer is not None:
            raise StoreError(f"{self!r} is open already")
        if not self.in_memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory of {self.path}: {exc}") from exc
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="mailslot-sqlite-writer")
        try:
            await self._on(self._writer, self._open_writer)
            if not self.in_memory:
                self._reader = ThreadPoolExecutor(1, thread_name_prefix="mailslot-sqlite-reader")
                await self._on(self._reader, self._open_reader)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for executor, close in (
            (self._reader, self._close_reader),
            (self._writer, self._close_writer),
        ):
            if executor is not None:
                try:
                    await self._on(executor, close)
                finally:
                    executor.shutdown(wait=True)
        self._reader = self._writer = None

    async def commit(self, ops: Sequence[OpRecord]) -> list[CommitResult]:
        if not ops:
            return []
        rows = [encode_op(op) for op in ops]  # off the writer thread: fail before the lock
        return await self._on(self._writer, self._commit, ops, rows)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._on(self._writer, self._save_snapshot, snapshot, snapshot_row(snapshot))

    async def _write(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[int]:
        return await self._on(self._writer, self._write_all, list(statements))

    async def _fetch(self, query: str, args: tuple[Any, ...]) -> list[Row]:
        if self.in_memory:
            return await self._on(self._writer, self._read_writer, query, args)
        return await self._on(self._reader, self._read_reader, query, args)

    async def _on(
        self,
        executor: ThreadPoolExecutor | None,
        fn: Callable[_P, _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        if executor is None:
            raise StoreError(f"{self!r} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: fn(*args, **kwargs))

    # Below: runs on the writer thread.

    def _open_writer(self) -> None:
        with _translated(f"opening {self.path}"):
            conn = sqlite3.connect(self.path, isolation_level=None)
            self._wconn = conn
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            if not self.in_memory:
                mode = _switch_to_wal(conn)
                if str(mode).lower() != "wal":
                    raise StoreError(f"SQLite at {self.path} refused WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            with self._transaction(conn, "migrating the schema"):
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(id TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
                )
                applied = {r[0] for r in conn.execute("SELECT id FROM schema_migrations")}
                for step in pending_migrations(applied, self._migrations):
                    for statement in step.sqlite:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)",
                        (step.id, time.time_ns()),
                    )

    def _close_writer(self) -> None:
        if self._wconn is not None:
            conn, self._wconn = self._wconn, None
            with _translated(f"closing {self.path}"):
                conn.close()

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, what: str) -> Iterator[None]:
        with _translated(what):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _writer_conn(self) -> sqlite3.Connection:
        if self._wconn is None:
            raise StoreError(f"{self!r} is not open")
        return self._wconn

    def _commit(self, ops: Sequence[OpRecord], rows: list[tuple[Any, ...]]) -> list[CommitResult]:
        conn = self._writer_conn()
        with self._transaction(conn, "commit"):
            keys = list(dict.fromkeys((op.collection, op.doc, op.src, op.seq) for op in ops))
            stored: dict[OpKey, int] = {
                (c, d, s, q): v for c, d, s, q, v in _lookup(conn, _SELECT_STORED, keys, 4)
            }
            docs = list(distinct_docs(ops))
            heads: dict[DocKey, int] = {
                (c, d): v for c, d, v in _lookup(conn, _SELECT_HEADS, docs, 2)
            }
            plan = plan_commit(ops, stored=stored, heads=heads)
            conn.executemany(INSERT_OP, [rows[i] for i in plan.inserts])
            conn.executemany(UPSERT_HEAD, [head_row(h) for h in plan.heads])
        return list(plan.results)

    def _save_snapshot(self, snapshot: Snapshot, row: tuple[Any, ...]) -> None:
        conn = self._writer_conn()
        with self._transaction(conn, "saving a snapshot"):
            head = conn.execute(SELECT_HEAD, (snapshot.collection, snapshot.doc)).fetchone()
            check_snapshot_fits(snapshot, None if head is None else head[0])
            conn.execute(UPSERT_SNAPSHOT, row)

    def _write_all(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        conn = self._writer_conn()
        with self._transaction(conn, "write"):
            return [conn.execute(query, args).rowcount for query, args in statements]

    def _read_writer(self, query: str, args: tuple[Any, ...]) -> list[Row]:
        with _translated("read"):
            return self._writer_conn().execute(query, args).fetchall()

    # Below: runs on the reader thread.

    def _open_reader(self) -> None:
        with _translated(f"opening {self.path} for reading"):
            conn = sqlite3.connect(self.path, isolation_level=None)
            self._rconn = conn
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only=ON")

    def _close_reader(self) -> None:
        if self._rconn is not None:
            conn, self._rconn = self._rconn, None
            with _translated(f"closing {self.path}"):
                conn.close()

    def _read_reader(self, query: str, args: tuple[Any, ...]) -> list[Row]:
        if self._rconn is None:
            raise StoreError(f"{self!r} is not open")
        with _translated("read"):
            return self._rconn.execute(query, args).fetchall()
