"""The group committer against an in-memory double whose commits the test holds and releases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailslot.errors import ConfigError, StoreBusy, StoreError, VersionConflict
from mailslot.store import CommitResult, GroupCommitter, OpRecord
from mailslot.store.plan import OpKey, plan_commit

from .conftest import op


class FakeStore:
    """Plans like a real store, keeps logs in dicts; ``hold()`` makes the next commit wait."""

    def __init__(self) -> None:
        self.logs: dict[str, list[OpRecord]] = {}
        self.stored: dict[OpKey, int] = {}
        self.batches: list[list[str]] = []
        self.gate: asyncio.Future[None] | None = None
        self.started: asyncio.Future[None] | None = None
        self.fail_next: Exception | None = None

    def hold(self) -> asyncio.Future[None]:
        """The next commit waits for the returned future; ``self.started`` fires when it does."""
        loop = asyncio.get_running_loop()
        self.gate, self.started = loop.create_future(), loop.create_future()
        return self.gate

    async def commit(self, ops: Sequence[OpRecord]) -> list[CommitResult]:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            assert self.started is not None
            self.started.set_result(None)
            await gate
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        heads = {("docs", d): len(log) for d, log in self.logs.items()}
        plan = plan_commit(ops, stored=self.stored, heads=heads)
        for i in plan.inserts:
            o = ops[i]
            self.logs.setdefault(o.doc, []).append(o)
            self.stored[(o.collection, o.doc, o.src, o.seq)] = o.version
        self.batches.append([f"{o.doc}@{o.version}" for o in ops])
        return list(plan.results)


async def test_an_idle_committer_commits_one_op_at_once() -> None:
    fake = FakeStore()
    async with GroupCommitter(fake) as committer:
        assert await committer.submit(op("a", 0)) == CommitResult("committed", 0)
        assert fake.batches == [["a@0"]]


async def test_ops_arriving_during_a_commit_share_the_next_one() -> None:
    fake = FakeStore()
    async with GroupCommitter(fake) as committer:
        gate = fake.hold()
        first = committer.submit_nowait(op("a", 0))
        assert fake.started is not None
        await fake.started
        rest = [committer.submit_nowait(op(d, v)) for d, v in [("a", 1), ("b", 0), ("c", 0)]]
        pending = committer.statistics().pending
        gate.set_result(None)  # before asserting: a held commit would hang the close
        assert pending == 4
        await asyncio.gather(first, *rest)
    assert fake.batches == [["a@0"], ["a@1", "b@0", "c@0"]]


async def test_batch_limit_splits_the_queue() -> None:
    fake = FakeStore()
    async with GroupCommitter(fake, batch_limit=4) as committer:
        await asyncio.gather(*(committer.submit_nowait(op(f"d{i}", 0)) for i in range(10)))
        stats = committer.statistics()
    assert [len(b) for b in fake.batches] == [4, 4, 2]
    assert (stats.commits, stats.ops, stats.max_batch_size) == (3, 10, 4)
    assert stats.mean_batch_size == pytest.approx(10 / 3)


async def test_statistics_measure_the_last_transaction() -> None:
    ticks = iter([10.0, 10.25, 20.0, 20.5])
    async with GroupCommitter(FakeStore(), clock=lambda: next(ticks)) as committer:
        assert committer.statistics().last_latency == 0.0
        await committer.submit(op("a", 0))
        assert committer.statistics().last_latency == 0.25
        await committer.submit(op("a", 1))
        assert committer.statistics().last_latency == 0.5


async def test_full_queue_refuses_nowait_and_makes_submit_wait() -> None:
    fake = FakeStore()
    async with GroupCommitter(fake, capacity=2) as committer:
        gate = fake.hold()
        in_flight = committer.submit_nowait(op("a", 0))
        assert fake.started is not None
        await fake.started
        queued = [committer.submit_nowait(op("a", 1)), committer.submit_nowait(op("b", 0))]
        try:
            with pytest.raises(StoreBusy, match="2 ops waiting"):
                committer.submit_nowait(op("c", 0))
            waiting = asyncio.ensure_future(committer.submit(op("c", 0)))
            await asyncio.sleep(0)
            assert not waiting.done()
            assert committer.statistics().pending == 3  # the one in flight and the two queued
        finally:
            gate.set_result(None)
        assert await waiting == CommitResult("committed", 0)
        await asyncio.gather(in_flight, *queued)
    assert fake.batches == [["a@0"], ["a@1", "b@0"], ["c@0"]]


async def test_a_woken_waiter_that_is_cancelled_passes_the_room_on() -> None:
    fake = FakeStore()
    async with GroupCommitter(fake, capacity=1) as committer:
        gate = fake.hold()
        first = committer.submit_nowait(op("a", 0))
        assert fake.started is not None
        await fake.started
        second = committer.submit_nowait(op("b", 0))
        gate_two = fake.hold()
        gave_up = asyncio.ensure_future(committer.submit(op("c", 0)))
        patient = asyncio.ensure_future(committer.submit(op("d", 0)))
        await asyncio.sleep(0)  # both wait for room now
        gate.set_result(None)
        await first
        await fake.started  # the writer took `b`, so one waiter was woken ...
        gave_up.cancel()  # ... and gives up before it could use the room
        with pytest.raises(asyncio.CancelledError):
            await gave_up
        await asyncio.sleep(0)
        pending = committer.statistics().pending
        gate_two.set_result(None)
        assert pending == 2  # `b` in flight, and `d` queued in the room `c` gave up
        assert await second == CommitResult("committed", 0)
        assert await patient == CommitResult("committed", 0)
    assert [b for b in fake.batches if "c@0" in b] == []


async def test_close_commits_everything_submitted_then_refuses() -> None:
    fake = FakeStore()
    committer = GroupCommitter(fake)
    await committer.open()
    futures = [committer.submit_nowait(op("a", v)) for v in range(5)]
    await committer.close()
    assert [f.result().version for f in futures] == [0, 1, 2, 3, 4]
    with pytest.raises(StoreError, match="not open"):
        committer.submit_nowait(op("a", 5))
    with pytest.raises(StoreError, match="opened before"):
        await committer.open()


async def test_submit_before_open_is_refused() -> None:
    with pytest.raises(StoreError, match="not open"):
        await GroupCommitter(FakeStore()).submit(op("a", 0))


async def test_a_failed_transaction_fails_its_batch_and_the_writer_goes_on() -> None:
    fake = FakeStore()
    async with GroupCommitter(fake) as committer:
        fake.fail_next = StoreError("disk on fire")
        batch = [committer.submit_nowait(op(d, 0)) for d in "ab"]
        for future in batch:
            with pytest.raises(StoreError, match="disk on fire"):
                await future
        assert await committer.submit(op("c", 0)) == CommitResult("committed", 0)
        stats = committer.statistics()
    assert (stats.failed, stats.commits, stats.broken) == (2, 1, 0)


async def test_a_conflict_without_misfits_fails_the_whole_batch() -> None:
    fake = FakeStore()
    async with GroupCommitter(fake) as committer:
        fake.fail_next = VersionConflict(
            "somewhere", collection="docs", doc_id="a", version=0, expected=1
        )
        batch = [committer.submit_nowait(op(d, 0)) for d in "ab"]
        for future in batch:
            with pytest.raises(VersionConflict, match="somewhere"):
                await future


async def test_a_cancelled_caller_still_gets_its_op_committed() -> None:
    fake = FakeStore()
    async with GroupCommitter(fake) as committer:
        gate = fake.hold()
        caller = asyncio.ensure_future(committer.submit(op("a", 0)))
        assert fake.started is not None
        await fake.started
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        gate.set_result(None)
        assert await committer.submit(op("a", 1)) == CommitResult("committed", 1)
    assert fake.batches == [["a@0"], ["a@1"]]


def test_capacity_and_batch_limit_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="at least 1, got 0 and 5"):
        GroupCommitter(FakeStore(), capacity=0, batch_limit=5)


# Many documents, each pipelining its ops in order, interleaved at random, with random batch sizes:
# every document's log comes out in submission order (a reordering would be a VersionConflict).
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 4), max_size=60),
    st.lists(st.booleans(), min_size=1, max_size=20),
    st.integers(1, 8),
)
def test_each_documents_ops_commit_in_submission_order(
    order: list[int], yields: list[bool], batch_limit: int
) -> None:
    async def scenario() -> None:
        fake = FakeStore()
        async with GroupCommitter(fake, batch_limit=batch_limit) as committer:
            next_version: dict[str, int] = {}
            futures = []
            for i, doc_index in enumerate(order):
                doc = f"d{doc_index}"
                version = next_version.get(doc, 0)
                next_version[doc] = version + 1
                futures.append(committer.submit_nowait(op(doc, version)))
                if yields[i % len(yields)]:
                    await asyncio.sleep(0)
            results = await asyncio.gather(*futures)
        assert [r.status for r in results] == ["committed"] * len(order)
        for doc, log in fake.logs.items():
            assert [o.version for o in log] == list(range(next_version[doc]))
        assert sum(len(b) for b in fake.batches) == len(order)
        assert all(len(b) <= batch_limit for b in fake.batches)

    asyncio.run(scenario())
