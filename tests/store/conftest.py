"""Fixtures for the store tests: one suite, run against SQLite and PostgreSQL.

Each PostgreSQL test gets a freshly created schema with a random name, dropped at the end, because
several people run the tests against the same database at once.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence

import pytest

from mailslot.store import MIGRATIONS, Migration, OpRecord, Store, parse_url
from mailslot.store.sqlite import SqliteStore


def op(
    doc: str = "d1",
    version: int = 0,
    *,
    src: str = "conn-a",
    seq: int | None = None,
    ts: int | None = None,
    collection: str = "docs",
    payload: object = ...,
    kind: str = "op",
    user: str | None = None,
) -> OpRecord:
    """An op record; by default ``seq`` follows ``version``, ``ts`` is 1000 + 10 * version and the
    payload is ``[version, "text <version>"]``."""
    return OpRecord(
        collection=collection,
        doc=doc,
        version=version,
        src=src,
        seq=version if seq is None else seq,
        op=[version, f"text {version}"] if payload is ... else payload,
        timestamp=1000 + 10 * version if ts is None else ts,
        kind=kind,  # type: ignore[arg-type]
        user=user,
    )


def make_store(url: str, *, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
    """Like ``open_store``, with a chosen list of migrations."""
    config = parse_url(url)
    if config.engine == "sqlite":
        return SqliteStore(config.path, migrations=migrations)
    from mailslot.store.postgres import PostgresStore

    return PostgresStore(config.dsn, schema=config.schema, migrations=migrations)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """A database URL no other test uses: a temporary SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    base: str = request.getfixturevalue("postgres_url")
    schema = f"mailslot_test_{secrets.token_hex(6)}"
    url = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    yield url
    from mailslot.store.postgres import drop_schema

    await drop_schema(parse_url(url).dsn, schema)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with make_store(store_url) as opened:
        yield opened
