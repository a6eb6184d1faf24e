"""One suite for every store backend: SQLite (a temporary file) and PostgreSQL (a fresh schema)."""

from __future__ import annotations

import asyncio
import random

import pytest

from mailslot.errors import StoreError, VersionConflict
from mailslot.store import (
    MIGRATIONS,
    CommitResult,
    GroupCommitter,
    Migration,
    Snapshot,
    Store,
    portable,
)

from .conftest import make_store, op

C = "docs"


def snap(doc: str, version: int, data: object, *, ts: int | None = None) -> Snapshot:
    return Snapshot(
        collection=C,
        doc=doc,
        version=version,
        type="http://sharejs.org/types/text-unicode",
        data=data,
        timestamp=1000 + 10 * (version - 1) if ts is None else ts,
    )


async def test_round_trip(store: Store) -> None:
    create = op("d1", 0, kind="create", payload={"type": "text-unicode", "data": "hi"}, user="ann")
    edits = [op("d1", 1, payload=[2, " there"]), op("d1", 2, payload=[{"d": 1}])]
    delete = op("d2", 0, kind="del", payload=None, src="conn-b", seq=7)
    results = await store.commit([create, edits[0], delete, edits[1]])
    assert results == [CommitResult("committed", v) for v in (0, 1, 0, 2)]

    parts = await store.load(C, "d1")
    assert parts.snapshot is None
    assert parts.ops == (create, *edits)
    assert parts.version == 3
    assert parts.ops[0].user == "ann"
    assert await store.ops_since(C, "d2", 0) == [delete]
    assert await store.find_op(C, "d2", "conn-b", 7) == delete
    assert await store.find_op(C, "d2", "conn-b", 8) is None

    info = await store.document(C, "d1")
    assert info is not None
    assert (info.version, info.created, info.updated) == (3, 1000, 1020)
    assert await store.document(C, "nope") is None
    assert [(d.doc, d.version) for d in await store.list_documents(C)] == [("d1", 3), ("d2", 1)]
    assert await store.list_documents("other") == []


async def test_list_documents_pages_by_id(store: Store) -> None:
    await store.commit([op(f"doc{i}", 0) for i in (3, 1, 4, 2)])
    first = await store.list_documents(C, limit=3)
    assert [d.doc for d in first] == ["doc1", "doc2", "doc3"]
    rest = await store.list_documents(C, after=first[-1].doc, limit=3)
    assert [d.doc for d in rest] == ["doc4"]


async def test_history_is_newest_first_with_limit_and_offset(store: Store) -> None:
    await store.commit([op("d1", v) for v in range(6)])
    assert [o.version for o in await store.history(C, "d1", limit=2)] == [5, 4]
    assert [o.version for o in await store.history(C, "d1", limit=3, offset=2)] == [3, 2, 1]
    assert await store.history(C, "d1", offset=6) == []


async def test_resubmission_is_idempotent(store: Store) -> None:
    await store.commit([op("d1", 0), op("d1", 1)])
    # the same ops again, and one resent at a later version (as a client would after a reconnect)
    again = await store.commit([op("d1", 0), op("d1", 1), op("d1", 2, seq=1)])
    assert again == [CommitResult("duplicate", v) for v in (0, 1, 1)]
    assert [o.version for o in await store.ops_since(C, "d1", 0)] == [0, 1]


async def test_duplicate_inside_one_batch(store: Store) -> None:
    results = await store.commit([op("d1", 0), op("d1", 1, seq=0)])
    assert results == [CommitResult("committed", 0), CommitResult("duplicate", 0)]
    assert len(await store.ops_since(C, "d1", 0)) == 1


async def test_a_batch_larger_than_one_lookup_reads_every_earlier_op(store: Store) -> None:
    # 1,200 documents, one op each already stored on every third one: a batch that resends
    # those and adds the next op everywhere finds each duplicate and each head, whatever the
    # backend's lookup chunking (the SQLite store reads 500 keys per statement)
    docs = [f"doc{i}" for i in range(1200)]
    await store.commit([op(d, 0) for d in docs[::3]])
    batch = [op(d, 0) for d in docs[::3]] + [
        op(d, 1 if i % 3 == 0 else 0) for i, d in enumerate(docs)
    ]
    results = await store.commit(batch)
    stored = len(docs[::3])
    assert results[:stored] == [CommitResult("duplicate", 0)] * stored
    assert results[stored:] == [
        CommitResult("committed", 1 if i % 3 == 0 else 0) for i in range(len(docs))
    ]
    heads = {d.doc: d.version for d in await store.list_documents(C, limit=2000)}
    assert heads == {d: 2 if i % 3 == 0 else 1 for i, d in enumerate(docs)}


async def test_version_taken_by_another_op_is_a_conflict(store: Store) -> None:
    await store.commit([op("d1", 0, src="conn-a")])
    with pytest.raises(VersionConflict, match=r"version 0 of document docs/d1") as caught:
        await store.commit([op("d2", 0), op("d1", 0, src="conn-b")])
    assert (caught.value.doc_id, caught.value.version, caught.value.expected) == ("d1", 0, 1)
    assert caught.value.misfits == ((1, 1),)
    assert isinstance(caught.value, StoreError)
    # all or nothing: d2's op of the rejected batch is not stored
    assert await store.document(C, "d2") is None


async def test_gap_is_a_conflict_and_rejects_the_rest_of_that_document(store: Store) -> None:
    with pytest.raises(VersionConflict, match="the log does not reach it") as caught:
        await store.commit([op("d1", 0), op("d1", 2), op("d1", 3), op("d2", 0)])
    assert caught.value.misfits == ((1, 1), (2, 1))
    assert await store.document(C, "d1") is None


async def test_group_commit_batches_many_documents_in_one_transaction(store: Store) -> None:
    async with GroupCommitter(store) as committer:
        futures = [committer.submit_nowait(op(f"doc{i}", 0)) for i in range(40)]
        results = await asyncio.gather(*futures)
        stats = committer.statistics()
    assert results == [CommitResult("committed", 0)] * 40
    assert (stats.commits, stats.ops, stats.max_batch_size) == (1, 40, 40)
    assert stats.mean_batch_size == 40.0
    assert len(await store.list_documents(C)) == 40


async def test_per_document_order_under_concurrency(store: Store) -> None:
    rng = random.Random(7)
    docs = [f"doc{i}" for i in range(6)]
    next_version = dict.fromkeys(docs, 0)

    async with GroupCommitter(store, batch_limit=5) as committer:

        async def writer(doc: str) -> list[CommitResult]:
            pending = []
            for _ in range(12):  # pipelined, as a document actor does
                pending.append(committer.submit_nowait(op(doc, next_version[doc])))
                next_version[doc] += 1
                if rng.random() < 0.5:
                    await asyncio.sleep(0)  # let other writers and the committer interleave
            return list(await asyncio.gather(*pending))

        answers = await asyncio.gather(*(writer(d) for d in docs))
        stats = committer.statistics()
    assert stats.commits > 1
    for doc, results in zip(docs, answers, strict=True):
        assert [r.version for r in results] == list(range(12))
        stored = await store.ops_since(C, doc, 0)
        assert [(o.version, o.seq) for o in stored] == [(v, v) for v in range(12)]


async def test_committer_isolates_a_conflict_and_refuses_the_document_until_reset(
    store: Store,
) -> None:
    await store.commit([op("d2", 0, src="other")])
    async with GroupCommitter(store) as committer:
        good = committer.submit_nowait(op("d1", 0))
        bad = committer.submit_nowait(op("d2", 0))
        built_on_bad = committer.submit_nowait(op("d2", 1))
        also_good = committer.submit_nowait(op("d3", 0))
        assert await good == CommitResult("committed", 0)
        assert await also_good == CommitResult("committed", 0)
        with pytest.raises(VersionConflict, match="docs/d2"):
            await bad
        with pytest.raises(VersionConflict, match="version 1 of document docs/d2"):
            await built_on_bad
        assert committer.statistics().broken == 1
        with pytest.raises(VersionConflict, match="reload it and call reset"):
            await committer.submit(op("d2", 1))
        committer.reset(C, "d2")
        assert await committer.submit(op("d2", 1)) == CommitResult("committed", 1)
        assert committer.statistics().failed == 3
    assert [o.src for o in await store.ops_since(C, "d2", 0)] == ["other", "conn-a"]


async def test_snapshot_at_version(store: Store) -> None:
    await store.commit([op("d1", v) for v in range(10)])
    await store.save_snapshot(snap("d1", 5, "five"))

    parts = await store.snapshot_parts(C, "d1", version=7)
    assert parts.snapshot == snap("d1", 5, "five")
    assert [o.version for o in parts.ops] == [5, 6]
    assert parts.version == 7

    below = await store.snapshot_parts(C, "d1", version=3)
    assert below.snapshot is None
    assert [o.version for o in below.ops] == [0, 1, 2]

    exact = await store.snapshot_parts(C, "d1", version=5)
    assert (exact.snapshot is not None, exact.ops) == (True, ())

    beyond = await store.snapshot_parts(C, "d1", version=100)
    assert beyond.version == 10  # the log ends before: the caller sees it

    latest = await store.load(C, "d1")
    assert latest.snapshot == snap("d1", 5, "five")
    assert [o.version for o in latest.ops] == [5, 6, 7, 8, 9]


async def test_snapshot_at_timestamp(store: Store) -> None:
    await store.commit([op("d1", v) for v in range(10)])  # op v stamped 1000 + 10 v
    await store.save_snapshot(snap("d1", 5, "five"))  # stamped 1040, its last op's time

    at = await store.snapshot_parts(C, "d1", timestamp=1065)
    assert at.snapshot is not None
    assert at.snapshot.version == 5
    assert [o.version for o in at.ops] == [5, 6]

    before_snapshot = await store.snapshot_parts(C, "d1", timestamp=1035)
    assert before_snapshot.snapshot is None
    assert before_snapshot.version == 4

    assert (await store.snapshot_parts(C, "d1", timestamp=999)).version == 0
    assert (await store.snapshot_parts(C, "d1", timestamp=5000)).version == 10


async def test_snapshot_is_replaced_and_latest_wins(store: Store) -> None:
    await store.commit([op("d1", v) for v in range(4)])
    assert await store.latest_snapshot(C, "d1") is None
    await store.save_snapshot(snap("d1", 2, "old"))
    await store.save_snapshot(snap("d1", 2, "new"))
    await store.save_snapshot(snap("d1", 4, {"any": ["json", 1]}))
    latest = await store.latest_snapshot(C, "d1")
    assert latest == snap("d1", 4, {"any": ["json", 1]})
    at_two = await store.snapshot_parts(C, "d1", version=3)
    assert at_two.snapshot is not None
    assert at_two.snapshot.data == "new"


async def test_snapshot_ahead_of_the_log_is_refused(store: Store) -> None:
    await store.commit([op("d1", 0)])
    with pytest.raises(StoreError, match="ahead of its op log, which is at version 1"):
        await store.save_snapshot(snap("d1", 2, "x"))
    await store.save_snapshot(snap("new-doc", 0, None))  # a document that does not exist yet
    assert await store.latest_snapshot(C, "d1") is None


async def test_snapshot_parts_takes_a_version_or_a_timestamp(store: Store) -> None:
    with pytest.raises(StoreError, match="not both"):
        await store.snapshot_parts(C, "d1", version=1, timestamp=1)
    with pytest.raises(StoreError, match="version must not be negative"):
        await store.snapshot_parts(C, "d1", version=-1)


async def test_ops_since(store: Store) -> None:
    await store.commit([op("d1", v) for v in range(8)])
    assert [o.version for o in await store.ops_since(C, "d1", 5)] == [5, 6, 7]
    assert [o.version for o in await store.ops_since(C, "d1", 2, 4)] == [2, 3]
    assert [o.version for o in await store.ops_since(C, "d1", 1, limit=2)] == [1, 2]
    assert await store.ops_since(C, "d1", 8) == []
    assert await store.ops_since(C, "nope", 0) == []
    with pytest.raises(StoreError, match="from_version must not be negative"):
        await store.ops_since(C, "d1", -1)


async def test_migrations_apply_once(store_url: str) -> None:
    ids = [m.id for m in MIGRATIONS]
    racing = [make_store(store_url), make_store(store_url)]  # two processes starting at once
    await asyncio.gather(*(s.open() for s in racing))
    try:
        assert [await s.migrations() for s in racing] == [ids, ids]
    finally:
        for s in racing:
            await s.close()
    async with make_store(store_url) as again:
        assert await again.migrations() == ids


async def test_a_new_migration_applies_on_the_next_open(store_url: str) -> None:
    async with make_store(store_url) as s:
        await s.commit([op("d1", 0)])
    extra = portable("test-1-extra", "CREATE TABLE test_extra (id {int} PRIMARY KEY, j {json})")
    async with make_store(store_url, migrations=(*MIGRATIONS, extra)) as s:
        assert await s.migrations() == [*(m.id for m in MIGRATIONS), "test-1-extra"]
        assert len(await s.ops_since(C, "d1", 0)) == 1
    # the database is now newer than code that does not know the migration
    with pytest.raises(StoreError, match="newer mailslot: unknown migrations test-1-extra"):
        async with make_store(store_url):
            pass


async def test_a_failing_migration_leaves_nothing_behind(store_url: str) -> None:
    broken = Migration(id="test-1-broken", sqlite=("CREATE TABLE",), postgres=("CREATE TABLE",))
    with pytest.raises(StoreError, match="migrating the schema failed"):
        async with make_store(store_url, migrations=(*MIGRATIONS, broken)):
            pass
    async with make_store(store_url) as s:
        assert await s.migrations() == [m.id for m in MIGRATIONS]


async def test_durable_across_close_and_reopen(store_url: str) -> None:
    async with make_store(store_url) as s, GroupCommitter(s) as committer:
        await asyncio.gather(*(committer.submit(op("d1", v)) for v in range(3)))
        await s.save_snapshot(snap("d1", 2, "two"))
    async with make_store(store_url) as s:
        parts = await s.load(C, "d1")
        assert parts.snapshot == snap("d1", 2, "two")
        assert [o.version for o in parts.ops] == [2]
        assert await s.commit([op("d1", 2)]) == [CommitResult("duplicate", 2)]


async def test_driver_errors_become_store_errors(store: Store) -> None:
    with pytest.raises(StoreError, match="commit failed") as caught:
        await store.commit([op("d1", 0, kind="bogus")])
    assert type(caught.value) is StoreError
    assert caught.value.__cause__ is not None
    assert type(caught.value.__cause__).__module__.split(".")[0] in {"sqlite3", "asyncpg"}
    assert await store.document(C, "d1") is None


async def test_payload_that_is_not_json_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="op at version 0 of document docs/d1 is not JSON"):
        await store.commit([op("d1", 0, payload=[object()])])
    with pytest.raises(StoreError, match="snapshot of document docs/d1 is not JSON"):
        await store.save_snapshot(snap("d1", 0, {1j}))


async def test_closed_store_refuses_work(store_url: str) -> None:
    s = make_store(store_url)
    with pytest.raises(StoreError, match="is not open"):
        await s.commit([op("d1", 0)])
    async with s:
        with pytest.raises(StoreError, match="is open already"):
            await s.open()
    with pytest.raises(StoreError, match="is not open"):
        await s.load(C, "d1")
    await s.close()  # idempotent
