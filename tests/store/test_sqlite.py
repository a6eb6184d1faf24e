"""What only the SQLite backend promises: WAL on disk, a reader beside the writer, memory."""

from __future__ import annotations

import sqlite3

from mailslot.store import CommitResult
from mailslot.store.sqlite import SqliteStore

from .conftest import op


async def test_file_database_is_in_wal_mode(tmp_path) -> None:
    path = tmp_path / "wal.db"
    async with SqliteStore(path) as store:
        await store.commit([op("d1", 0)])
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            # a committed op is visible to another connection at once
            assert raw.execute("SELECT count(*) FROM ops").fetchone()[0] == 1
        finally:
            raw.close()


async def test_reads_see_commits_through_the_reader_connection(tmp_path) -> None:
    async with SqliteStore(tmp_path / "r.db") as store:
        for v in range(3):
            assert await store.commit([op("d1", v)]) == [CommitResult("committed", v)]
            assert len(await store.ops_since("docs", "d1", 0)) == v + 1


async def test_memory_database_is_private_and_gone_after_close() -> None:
    first = SqliteStore(":memory:")
    async with first:
        assert first.in_memory
        await first.commit([op("d1", 0)])
        assert (await first.load("docs", "d1")).version == 1
    async with SqliteStore(":memory:") as second:
        assert (await second.load("docs", "d1")).version == 0
