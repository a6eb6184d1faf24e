"""Document actors on the virtual clock, over a real SQLite store and group committer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from mailslot.collab.document import DocumentActor, DocumentConfig, DocumentManager, Publish
from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
    DocSnapshot,
    OpAcked,
    SnapshotAt,
    SubmitOp,
    SubscribeDoc,
)
from mailslot.runtime import ActorRef
from mailslot.store import CommitResult, GroupCommitter, OpRecord, Store
from mailslot.store.sqlite import SqliteStore
from mailslot.testing import Probe, TestKit

TEXT = "http://sharejs.org/types/text-unicode"


class GatedStore(SqliteStore):
    """The real SQLite store whose commits wait until the test opens the gate."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate: asyncio.Future[None] | None = None
        self.fail_next = False

    async def commit(self, ops: Sequence[OpRecord]) -> list[CommitResult]:
        if self.gate is not None:
            await self.gate
        if self.fail_next:
            self.fail_next = False
            from mailslot.errors import StoreError

            raise StoreError("disk on fire")
        return await super().commit(ops)


class Env:
    def __init__(self, kit: TestKit, store: GatedStore, committer: GroupCommitter) -> None:
        self.kit = kit
        self.store = store
        self.committer = committer
        self.hub = kit.probe("hub")
        self.clock_ms = 1_000_000
        # acks straight to the author here (the hub's ordered delivery is tested in test_hub)
        self.config = DocumentConfig(
            snapshot_every=5, idle_timeout=60, log_tail=3, now_ms=self.now_ms, acks_via_hub=False
        )
        self.manager = kit.system.spawn(
            lambda: DocumentManager(
                store=store, committer=committer, hub=self.hub.ref, config=self.config
            ),
            name="docs",
        )

    def now_ms(self) -> int:
        self.clock_ms += 10
        return self.clock_ms

    def client(self, name: str) -> Probe:
        return self.kit.probe(name)

    def submit(
        self,
        who: Probe,
        tag: int,
        v: int | None,
        seq: int,
        op: Any,
        *,
        src: str = "",
        kind: str = "op",
        d: str = "d1",
    ) -> None:
        who.tell(
            self.manager,
            SubmitOp(
                tag=tag, c="docs", d=d, v=v, src=src or who.ref.name, seq=seq, kind=kind, op=op
            ),  # type: ignore[arg-type]
        )

    def create(self, who: Probe, text: str, *, d: str = "d1", seq: int = 1) -> None:
        self.submit(who, 100 + seq, None, seq, {"type": TEXT, "data": text}, kind="create", d=d)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = GatedStore(str(tmp_path / "docs.db"))
    async with store, GroupCommitter(store) as committer, TestKit() as kit:
        yield Env(kit, store, committer)


async def snapshot(env: Env, who: Probe, d: str = "d1") -> DocSnapshot:
    who.tell(env.manager, SubscribeDoc(tag=7, c="docs", d=d))
    reply = await who.expect(DocSnapshot)
    assert reply.tag == 7
    return reply


async def test_create_edit_ack_and_publish_after_commit(env: Env) -> None:
    ann = env.client("ann")
    env.create(ann, "hello")
    ack = await ann.expect(OpAcked)
    assert (ack.v, ack.src, ack.seq) == (0, "ann", 1)
    created = await env.hub.expect(Publish)
    assert json.loads(created.frame) == {
        "a": "op",
        "c": "docs",
        "d": "d1",
        "v": 0,
        "src": "ann",
        "seq": 1,
        "create": {"type": TEXT, "data": "hello"},
    }
    env.submit(ann, 2, 1, 2, [5, " world"])
    ack = await ann.expect(OpAcked)
    assert (ack.tag, ack.v, ack.frames) == (2, 1, ())
    published = await env.hub.expect(Publish)
    assert (published.v, published.author) == (1, ann.ref.path)
    assert (await snapshot(env, ann)).data == "hello world"


async def test_concurrent_ops_are_transformed_and_the_second_author_gets_the_missed_op(
    env: Env,
) -> None:
    ann, bob = env.client("ann"), env.client("bob")
    env.create(ann, "abc")
    await ann.expect(OpAcked)
    env.submit(ann, 2, 1, 2, [1, "X"])  # a X bc
    env.submit(bob, 3, 1, 1, [2, "Y"])  # made against version 1 too: ab Y c
    first = await ann.expect(OpAcked)
    second = await bob.expect(OpAcked)
    assert (first.v, second.v) == (1, 2)
    assert [json.loads(f)["op"] for f in second.frames] == [[1, "X"]]
    assert (await snapshot(env, ann)).data == "aXbYc"


async def test_a_resubmitted_op_is_acked_again_and_applied_once(env: Env) -> None:
    ann = env.client("ann")
    env.create(ann, "x")
    await ann.expect(OpAcked)
    env.submit(ann, 2, 1, 2, ["A"])
    await ann.expect(OpAcked)
    env.submit(ann, 9, 1, 2, ["A"])  # the same (src, seq) resent after a reconnect
    again = await ann.expect(OpAcked)
    assert (again.tag, again.v) == (9, 1)
    assert (await snapshot(env, ann)).data == "Ax"
    assert await env.store.document("docs", "d1") is not None
    assert (await env.store.document("docs", "d1")).version == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("v", "op", "kind", "code"),
    [
        (5, ["x"], "op", "ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT"),
        (1, [1.5], "op", "ERR_OT_OP_BADLY_FORMED"),
        (1, [10, "x"], "op", "ERR_OT_OP_NOT_APPLIED"),
        (None, {"type": TEXT, "data": "again"}, "create", "ERR_DOC_ALREADY_CREATED"),
    ],
)
async def test_bad_ops_get_the_sharedb_error(
    env: Env, v: int | None, op: Any, kind: str, code: str
) -> None:
    ann = env.client("ann")
    env.create(ann, "abc")
    await ann.expect(OpAcked)
    env.submit(ann, 5, v, 2, op, kind=kind)
    error = await ann.expect(DocError)
    assert (error.tag, error.code) == (5, code)
    assert (await snapshot(env, ann)).data == "abc"


async def test_edit_of_a_missing_document(env: Env) -> None:
    ann = env.client("ann")
    env.submit(ann, 1, 0, 1, ["x"], d="nope")
    error = await ann.expect(DocError)
    assert error.code == "ERR_DOC_DOES_NOT_EXIST"
    reply = await snapshot(env, ann, "nope")
    assert (reply.v, reply.type, reply.data) == (0, None, None)


async def test_nothing_is_acked_shown_or_published_before_commit(env: Env) -> None:
    ann, bob = env.client("ann"), env.client("bob")
    env.create(ann, "abc")
    await ann.expect(OpAcked)
    await env.hub.expect(Publish)
    env.store.gate = asyncio.get_running_loop().create_future()
    with env.kit.holding():
        env.submit(ann, 2, 1, 2, ["1"])
        env.submit(ann, 3, 2, 3, ["2"])  # pipelined: applied while the first still commits
        await ann.expect_no_message(within=1)
        await env.hub.expect_no_message(within=1)
        held = await snapshot(env, bob)
        assert (held.v, held.data) == (1, "abc")  # the committed version, not the applied one
    env.store.gate.set_result(None)
    acks = [await ann.expect(OpAcked), await ann.expect(OpAcked)]
    assert [a.v for a in acks] == [1, 2]
    assert [(await env.hub.expect(Publish)).v for _ in range(2)] == [1, 2]
    assert (await snapshot(env, bob)).data == "21abc"


async def test_a_failed_commit_rejects_pending_ops_and_reloads(env: Env) -> None:
    ann = env.client("ann")
    env.create(ann, "abc")
    await ann.expect(OpAcked)
    env.store.fail_next = True
    env.submit(ann, 2, 1, 2, ["lost "])
    error = await ann.expect(DocError, within=5)
    assert error.code == "ERR_MAILSLOT_STORE_FAILED"
    await env.kit.advance(3)  # the supervisor's backoff, then a reload from the store
    reply = await snapshot(env, ann)
    assert (reply.v, reply.data) == (1, "abc")
    env.submit(ann, 3, 1, 3, ["kept "])
    assert (await ann.expect(OpAcked)).v == 1
    assert (await snapshot(env, ann)).data == "kept abc"


async def test_catch_up_from_a_version_uses_memory_then_the_store(env: Env) -> None:
    ann = env.client("ann")
    env.create(ann, "")
    await ann.expect(OpAcked)
    for i in range(6):  # log_tail is 3: the oldest ops are only in the store
        env.submit(ann, 10 + i, 1 + i, 2 + i, [i, str(i)] if i else ["0"])
        await ann.expect(OpAcked)
    for since in (6, 1):
        ann.tell(env.manager, SubscribeDoc(tag=50 + since, c="docs", d="d1", v=since))
        ops = await ann.expect(DocOps)
        assert [json.loads(f)["v"] for f in ops.frames] == list(range(since, 7))


async def test_snapshots_at_versions_and_times(env: Env) -> None:
    ann = env.client("ann")
    env.create(ann, "a")
    await ann.expect(OpAcked)
    for i, ch in enumerate("bcdefg"):
        env.submit(ann, 10 + i, 1 + i, 2 + i, [1 + i, ch])
        await ann.expect(OpAcked)
    assert await env.store.latest_snapshot("docs", "d1") is not None  # snapshot_every=5
    ann.tell(env.manager, SnapshotAt(tag=1, c="docs", d="d1", version=3))
    at3 = await ann.expect(DocSnapshot)
    assert (at3.v, at3.data) == (3, "abc")
    first_edit_ts = 1_000_000 + 20  # env.now_ms() ticks by 10 per op
    ann.tell(env.manager, SnapshotAt(tag=2, c="docs", d="d1", timestamp=first_edit_ts))
    at_ts = await ann.expect(DocSnapshot)
    assert (at_ts.v, at_ts.data) == (2, "ab")
    ann.tell(env.manager, SnapshotAt(tag=3, c="docs", d="d1", version=99))
    assert (await ann.expect(DocError)).code == "ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT"


async def test_idle_documents_passivate_and_come_back(env: Env) -> None:
    ann = env.client("ann")
    env.create(ann, "persist me")
    await ann.expect(OpAcked)
    await env.kit.advance(61)
    await env.kit.settle()
    assert env.kit.system.lookup("/user/docs/docs:d1") is None
    assert (await snapshot(env, ann)).data == "persist me"
    assert env.kit.system.lookup("/user/docs/docs:d1") is not None


async def test_a_fresh_actor_rebuilds_from_the_store(env: Env, tmp_path: Path) -> None:
    ann = env.client("ann")
    env.create(ann, "one")
    await ann.expect(OpAcked)
    env.submit(ann, 2, 1, 2, [3, " two"])
    await ann.expect(OpAcked)
    store: Store = SqliteStore(str(tmp_path / "docs.db"))
    async with store, GroupCommitter(store) as committer, TestKit() as kit2:
        probe = kit2.probe()
        ref: ActorRef = kit2.system.spawn(
            lambda: DocumentActor("docs", "d1", store=store, committer=committer, hub=None)
        )
        probe.tell(ref, SubscribeDoc(tag=1, c="docs", d="d1"))
        reply = await probe.expect(DocSnapshot)
        assert (reply.v, reply.data) == (2, "one two")


async def test_acks_can_travel_with_the_broadcast_through_the_hub(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "hub.db"))
    async with store, GroupCommitter(store) as committer, TestKit() as kit:
        hub, ann = kit.probe("hub"), kit.probe("ann")
        ref = kit.system.spawn(
            lambda: DocumentActor("docs", "d1", store=store, committer=committer, hub=hub.ref)
        )
        create = {"type": TEXT, "data": "ab"}
        ann.tell(ref, SubmitOp(tag=1, c="docs", d="d1", v=None, src="a", seq=1, kind="create",
                               op=create))  # fmt: skip
        first = await hub.expect(Publish)
        assert (first.ack_to, first.ack) == (ann.ref, OpAcked(tag=1, v=0, src="a", seq=1))
        await ann.expect_no_message(within=1)  # the ack is the hub's to deliver
