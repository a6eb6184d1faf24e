"""The PostgreSQL store, over asyncpg: for several nodes sharing one database, and for scale.

Theory of operation: one asyncpg pool (a few connections) serves commits and reads. A commit is one
transaction of four statements whatever the batch size: read the stored versions of the batch's
``(collection, doc, src, seq)`` keys and the heads of its documents (``FOR UPDATE``, in a fixed
order, so concurrent writers of one document queue up instead of interleaving), plan it with
:func:`~mailslot.store.plan.plan_commit`, then insert every op and move every head with one
``unnest`` statement each. Two writers creating the same new document at once is the one race the
row locks do not cover; the loser's batch fails on the unique key and nothing of it is stored.

Everything lives in one schema (``public`` unless the URL says ``?schema=name``), reached through
``search_path``, so that several stores (tests, benchmarks) can share a database. PostgreSQL's
default ``synchronous_commit=on`` makes a confirmed commit durable.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from mailslot.errors import ConfigError, StoreError
from mailslot.store.base import (
    SELECT_HEAD,
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
from mailslot.store.plan import plan_commit
from mailslot.store.records import CommitResult, OpRecord, Snapshot
from mailslot.store.url import SCHEMA_NAME

__all__ = ["PostgresStore", "drop_schema", "numbered"]

if TYPE_CHECKING:
    _Connection: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

_STORED = """
SELECT k.collection, k.doc, k.src, k.seq, o.version
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS k(collection, doc, src, seq)
JOIN ops o ON o.collection = k.collection AND o.doc = k.doc AND o.src = k.src AND o.seq = k.seq
"""
_HEADS = """
SELECT d.collection, d.doc, d.version
FROM documents d
JOIN unnest($1::text[], $2::text[]) AS k(collection, doc)
  ON d.collection = k.collection AND d.doc = k.doc
ORDER BY d.collection, d.doc
FOR UPDATE OF d
"""
_INSERT_OPS = """
INSERT INTO ops (collection, doc, version, src, seq, kind, op, ts, user_id)
SELECT c, d, v, s, q, k, o::json, t, u
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[],
            $7::text[], $8::bigint[], $9::text[]) AS x(c, d, v, s, q, k, o, t, u)
"""
_UPSERT_HEADS = """
INSERT INTO documents (collection, doc, version, created, updated)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
ON CONFLICT (collection, doc) DO UPDATE SET version = excluded.version, updated = excluded.updated
"""
_MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('mailslot-migrate:' || $1))"


@cache
def numbered(query: str) -> str:
    """A ``?``-placeholder query with PostgreSQL's ``$1, $2, ...`` instead."""
    counter = iter(range(1, query.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", query)


def _translated(what: str) -> AbstractContextManager[None]:
    return translated(_DRIVER_ERRORS, f"PostgreSQL {what}")


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into ``width`` column lists, the shape ``unnest`` takes."""
    return [[row[i] for row in rows] for i in range(width)]


class PostgresStore(Store):
    """The op log and snapshots in a PostgreSQL schema.

    Args:
        dsn: a ``postgresql://`` URL for asyncpg (without mailslot's own ``schema`` parameter).
        schema: the schema that holds the tables; created if missing. A plain lower-case name.
        display: how to name the database in errors (a URL without its password).
        pool_size: the most connections the store opens.
        migrations: the schema's migrations (all of them by default).

    Raises:
        ConfigError: ``schema`` is not a plain lower-case name.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        display: str | None = None,
        pool_size: int = 4,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        if not SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(f"PostgreSQL schema {schema!r} is not a plain lower-case name")
        self.schema = schema
        self._dsn = dsn
        self._display = display or "postgresql"
        self._pool_size = pool_size
        self._migrations = tuple(migrations)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._display!r}, schema={self.schema!r})"

    async def open(self) -> None:
        if self._pool is not None:
            raise StoreError(f"{self!r} is open already")
        with _translated(f"connecting to {self._display}"):
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                server_settings={"search_path": self.schema},
            )
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with _translated(f"closing {self._display}"):
                await pool.close()

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[_Connection]:
        if self._pool is None:
            raise StoreError(f"{self!r} is not open")
        with _translated(what):
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn

    async def _migrate(self) -> None:
        async with self._transaction("migrating the schema") as conn:
            await conn.execute(_MIGRATE_LOCK, self.schema)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            applied = {r[0] for r in await conn.fetch("SELECT id FROM schema_migrations")}
            for step in pending_migrations(applied, self._migrations):
                for statement in step.postgres:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (id, applied_at) VALUES ($1, $2)",
                    step.id,
                    time.time_ns(),
                )

    async def commit(self, ops: Sequence[OpRecord]) -> list[CommitResult]:
        if not ops:
            return []
        rows = [encode_op(op) for op in ops]
        keys = [(op.collection, op.doc, op.src, op.seq) for op in ops]
        docs = distinct_docs(ops)
        async with self._transaction("commit") as conn:
            found = await conn.fetch(_STORED, *_columns(keys, 4))
            locked = await conn.fetch(_HEADS, *_columns(docs, 2))
            plan = plan_commit(
                ops,
                stored={(r[0], r[1], r[2], r[3]): r[4] for r in found},
                heads={(r[0], r[1]): r[2] for r in locked},
            )
            if plan.inserts:
                await conn.execute(_INSERT_OPS, *_columns([rows[i] for i in plan.inserts], 9))
                await conn.execute(_UPSERT_HEADS, *_columns([head_row(h) for h in plan.heads], 5))
        return list(plan.results)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        row = snapshot_row(snapshot)
        async with self._transaction("saving a snapshot") as conn:
            head = await conn.fetchval(
                numbered(SELECT_HEAD + " FOR SHARE"), snapshot.collection, snapshot.doc
            )
            check_snapshot_fits(snapshot, head)
            await conn.execute(numbered(UPSERT_SNAPSHOT), *row)

    async def _write(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[int]:
        counts: list[int] = []
        async with self._transaction("write") as conn:
            for query, args in statements:
                status = await conn.execute(numbered(query), *args)
                last = status.rsplit(" ", 1)[-1]
                counts.append(int(last) if last.isdigit() else 0)
        return counts

    async def _fetch(self, query: str, args: tuple[Any, ...]) -> list[Row]:
        if self._pool is None:
            raise StoreError(f"{self!r} is not open")
        with _translated("read"):
            rows: list[Row] = [tuple(r) for r in await self._pool.fetch(numbered(query), *args)]
            return rows


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a store's schema and everything in it (tests and benchmarks clean up with this)."""
    with _translated("dropping a schema"):
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
