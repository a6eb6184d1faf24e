"""The old mutex engine: document semantics (the same as the actor engine's), the planted lock-order
bug found by the lock profiler, the hottest locks ranked under load, and the stall watchdog.

Replies are awaited as futures with generous timeouts; nothing sleeps to wait.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from mailslot.collab.document import Publish
from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
    DocReply,
    DocRequest,
    DocSnapshot,
    OpAcked,
    SnapshotAt,
    SubmitOp,
    SubscribeDoc,
    UnsubscribeDoc,
)
from mailslot.errors import ConfigError
from mailslot.legacy import LegacyConfig, LegacyEngine, mentions
from mailslot.legacy.engine import ERR_ENGINE_RESTARTED
from mailslot.migrate import LockProfiler
from mailslot.store import CommitResult, GroupCommitter, OpRecord
from mailslot.store.sqlite import SqliteStore

TEXT = "http://sharejs.org/types/text-unicode"
WAIT = 20.0


class Env:
    def __init__(self, store: SqliteStore, committer: GroupCommitter, engine: LegacyEngine) -> None:
        self.store = store
        self.committer = committer
        self.engine = engine
        self.published: list[Publish] = []
        self.tags = 0

    async def ask(self, request: DocRequest, author: str | None = "s1") -> DocReply:
        future: asyncio.Future[DocReply] = asyncio.get_running_loop().create_future()
        self.engine.submit(request, future.set_result, author=author)
        return await asyncio.wait_for(future, WAIT)

    def tag(self) -> int:
        self.tags += 1
        return self.tags

    async def create(self, d: str = "d1", text: str = "", src: str = "a", seq: int = 1) -> Any:
        return await self.ask(
            SubmitOp(
                tag=self.tag(), c="docs", d=d, v=None, src=src, seq=seq, kind="create",
                op={"type": TEXT, "data": text},
            )
        )  # fmt: skip

    async def op(self, op: Any, v: int, *, d: str = "d1", src: str = "a", seq: int = 2) -> Any:
        return await self.ask(
            SubmitOp(tag=self.tag(), c="docs", d=d, v=v, src=src, seq=seq, kind="op", op=op)
        )

    async def text(self, d: str = "d1") -> DocSnapshot:
        reply = await self.ask(SubscribeDoc(tag=self.tag(), c="docs", d=d, subscribe=False))
        assert isinstance(reply, DocSnapshot)
        return reply


async def _env(tmp_path: Path, config: LegacyConfig) -> AsyncIterator[Env]:
    store = SqliteStore(tmp_path / "legacy.db")
    await store.open()
    committer = GroupCommitter(store)
    await committer.open()
    env = Env(store, committer, None)  # type: ignore[arg-type]
    engine = LegacyEngine(
        store=store, committer=committer, publish=env.published.append, config=config
    )
    env.engine = engine
    engine.start()
    try:
        yield env
    finally:
        await engine.stop()
        await committer.close()
        await store.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in _env(tmp_path, LegacyConfig(workers=4, log_tail=3, snapshot_every=4)):
        yield e


async def test_create_edit_and_read_back(env: Env) -> None:
    created = await env.create(text="hello")
    assert isinstance(created, OpAcked)
    assert created.v == 0
    acked = await env.op([5, " world"], 1)
    assert isinstance(acked, OpAcked)
    assert (acked.v, acked.frames) == (1, ())
    snap = await env.text()
    assert (snap.v, snap.type, snap.data) == (2, TEXT, "hello world")
    assert [p.v for p in env.published] == [0, 1]
    assert env.published[1].author == "s1"
    assert json.loads(env.published[1].frame)["op"] == [5, " world"]
    assert await env.store.document("docs", "d1") is not None


async def test_a_stale_op_is_transformed_and_gets_what_it_missed(env: Env) -> None:
    await env.create(text="abc")
    await env.op([3, "X"], 1, src="a", seq=2)
    late = await env.op(["Y"], 1, src="b", seq=1)
    assert isinstance(late, OpAcked)
    assert late.v == 2
    assert [json.loads(f)["op"] for f in late.frames] == [[3, "X"]]
    assert (await env.text()).data == "YabcX"


async def test_a_resubmitted_op_is_acked_again_not_applied_twice(env: Env) -> None:
    await env.create(text="")
    first = await env.op(["x"], 1, src="a", seq=7)
    again = await env.op(["x"], 1, src="a", seq=7)
    assert isinstance(first, OpAcked)
    assert isinstance(again, OpAcked)
    assert again.v == first.v == 1
    snap = await env.text()
    assert (snap.v, snap.data) == (2, "x")


async def test_catch_up_from_memory_and_from_the_store(env: Env) -> None:
    await env.create(text="")
    for i in range(6):  # the log tail keeps 3: catching up from 1 reads the store
        assert isinstance(await env.op([str(i)], i + 1, seq=i + 2), OpAcked)
    recent = await env.ask(SubscribeDoc(tag=1, c="docs", d="d1", v=5))
    old = await env.ask(SubscribeDoc(tag=2, c="docs", d="d1", v=1))
    assert isinstance(recent, DocOps)
    assert isinstance(old, DocOps)
    assert [json.loads(f)["v"] for f in recent.frames] == [5, 6]
    assert [json.loads(f)["v"] for f in old.frames] == [1, 2, 3, 4, 5, 6]


async def test_snapshot_at_a_version(env: Env) -> None:
    await env.create(text="a")
    await env.op([1, "b"], 1)
    await env.op([2, "c"], 2, seq=3)
    at2 = await env.ask(SnapshotAt(tag=1, c="docs", d="d1", version=2))
    assert isinstance(at2, DocSnapshot)
    assert (at2.v, at2.data) == (2, "ab")
    ahead = await env.ask(SnapshotAt(tag=2, c="docs", d="d1", version=9))
    assert isinstance(ahead, DocError)
    assert ahead.code == "ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT"


@pytest.mark.parametrize(
    ("op", "v", "code"),
    [
        ([1, "x"], 9, "ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT"),
        ([{"d": 0}], 1, "ERR_OT_OP_BADLY_FORMED"),
        ([99, "x"], 1, "ERR_OT_OP_NOT_APPLIED"),
    ],
)
async def test_bad_ops_are_rejected_and_change_nothing(
    env: Env, op: Any, v: int, code: str
) -> None:
    await env.create(text="a")
    reply = await env.op(op, v)
    assert isinstance(reply, DocError)
    assert reply.code == code
    snap = await env.text()
    assert (snap.v, snap.data) == (1, "a")
    assert env.engine.statistics().rejected == 1


async def test_ops_on_a_missing_document_and_double_create(env: Env) -> None:
    missing = await env.op(["x"], 0, d="nope")
    assert isinstance(missing, DocError)
    assert missing.code == "ERR_DOC_DOES_NOT_EXIST"
    await env.create(text="a")
    twice = await env.create(text="b", seq=9)
    assert isinstance(twice, DocError)
    assert twice.code == "ERR_DOC_ALREADY_CREATED"


async def test_evicted_documents_reload_what_another_engine_committed(env: Env) -> None:
    await env.create(text="a")
    # another engine commits version 1 behind this one's back (as after a cutover move)
    record = OpRecord(
        collection="docs", doc="d1", version=1, src="z", seq=1, op=[1, "Z"], timestamp=1
    )
    await env.store.commit([record])
    env.engine.evict("docs", "d1")
    snap = await env.text()
    assert (snap.v, snap.data) == (2, "aZ")


async def test_mentions_reach_the_inbox_and_presence_is_tracked(env: Env) -> None:
    await env.create(text="")
    await env.op(["hi @ann and @bob, @ann"], 1)
    assert env.engine.inbox("ann") == [("docs", "d1", 1)]
    assert env.engine.statistics().mentions == 2
    assert env.engine.statistics().editors == 1
    env.engine.submit(UnsubscribeDoc(c="docs", d="d1"), lambda r: None, author="s1")
    await env.text()  # one more request: the unsubscribe is done by the time it is answered
    # (four workers: not guaranteed in order, so only check it did not break anything)
    assert env.engine.statistics().documents == 1


def test_mentions_are_found_in_inserted_text_only() -> None:
    assert mentions([3, "hey @ann.b", {"d": "@zed"}, "@bob"]) == ("ann.b", "bob")
    assert mentions({"type": TEXT, "data": "@ann"}) == ()
    assert mentions([1, "no one"]) == ()
    assert mentions(("@ann",)) == ("ann",)  # transform answers tuples


def test_bad_configuration_is_named() -> None:
    with pytest.raises(ConfigError, match="workers"):
        LegacyConfig(workers=0)
    with pytest.raises(ConfigError, match="stall_timeout"):
        LegacyConfig(stall_timeout=0)


# ---- the lock profiler on the old engine ------------------------------------------------------


@pytest.mark.parametrize("bug", [False, True])
async def test_the_planted_inversion_is_found_before_it_deadlocks(
    tmp_path: Path, bug: bool
) -> None:
    """One mention, then one digest, one after the other: no deadlock can happen, yet with the
    bug on the order checker sees document -> notify and notify -> document."""
    config = LegacyConfig(workers=1, digest_every=1, lock_order_bug=bug)
    with LockProfiler() as profiler:
        async for env in _env(tmp_path, config):
            await env.create(text="")
            await env.op(["ping @ann"], 1)
            await env.text()
    report = profiler.report()
    inversions = [i for i in report.inversions if any("legacy/engine.py" in c for c in i.classes)]
    if not bug:
        assert inversions == []
        return
    assert len(inversions) == 1
    names = " ".join(inversions[0].classes)
    assert "_Doc.__init__" in names
    assert "_Generation.__init__" in names
    assert any("_digest" in f.func for e in inversions[0].edges for f in e.stack)


async def test_under_load_the_hottest_lock_is_the_document_lock(tmp_path: Path) -> None:
    """Sixteen editors on one document: the per-document lock (held across the commit) ranks
    first, ahead of the registry, presence and queue locks."""
    with LockProfiler() as profiler:
        async for env in _env(tmp_path, LegacyConfig(workers=8)):
            await env.create(text="")

            async def editor(env: Env, i: int) -> None:
                for n in range(10):
                    reply = await env.op([f"{i}."], 1, src=f"s{i}", seq=n + 1)
                    assert isinstance(reply, OpAcked)

            await asyncio.gather(*(editor(env, i) for i in range(16)))
            assert (await env.text()).v == 161
    report = profiler.report()
    ours = [c for c in report.classes if "legacy/engine.py" in c.name]
    assert ours[0].name.endswith("in _Doc.__init__ (Lock)")
    assert ours[0].contended > 0
    assert ours[0].acquisitions >= 161
    assert len([c for c in ours if "_Generation.__init__ (Lock)" in c.name]) >= 2


# ---- the stall watchdog ---------------------------------------------------------------------


class StuckStore(SqliteStore):
    """Commits never finish until released (a stand-in for a deadlocked worker)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release: asyncio.Future[None] | None = None

    async def commit(self, ops: Sequence[OpRecord]) -> list[CommitResult]:
        if self.release is not None:
            await self.release
        return await super().commit(ops)


async def test_a_stalled_engine_answers_and_restarts(tmp_path: Path) -> None:
    store = StuckStore(tmp_path / "stuck.db")
    await store.open()
    committer = GroupCommitter(store)
    await committer.open()
    stalls: list[str] = []
    engine = LegacyEngine(
        store=store, committer=committer, config=LegacyConfig(workers=2, stall_timeout=0.05)
    )
    engine.on_stall = stalls.append
    engine.start()
    env = Env(store, committer, engine)
    try:
        await env.create(text="a")
        store.release = asyncio.get_running_loop().create_future()
        stuck = await env.op([1, "b"], 1)
        assert isinstance(stuck, DocError)
        assert stuck.code == ERR_ENGINE_RESTARTED
        assert engine.statistics().restarts == 1
        assert engine.statistics().generation == 2
        assert len(stalls) == 1
        store.release.set_result(None)
        store.release = None
        # the new generation reloads from the store, where the stuck op did land
        snap = await env.text()
        assert snap.data in ("ab", "a")
        again = await env.op([1, "b"], 1)  # the client resends: acked (again), once
        assert isinstance(again, OpAcked)
        assert (await env.text()).data == "ab"
    finally:
        await engine.stop(timeout=2.0)
        await committer.close()
        await store.close()
