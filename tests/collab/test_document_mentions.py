"""Document actors find the mentions an op creates and report them only once it is committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from mailslot.collab.document import DocumentConfig, DocumentManager
from mailslot.collab.mentions import Mentioned
from mailslot.collab.protocol.docs import OpAcked, SubmitOp
from mailslot.store import CommitResult, GroupCommitter, OpRecord
from mailslot.store.sqlite import SqliteStore
from mailslot.testing import Probe, TestKit

TEXT = "http://sharejs.org/types/text-unicode"


class GatedStore(SqliteStore):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate: asyncio.Future[None] | None = None

    async def commit(self, ops: Sequence[OpRecord]) -> list[CommitResult]:
        if self.gate is not None:
            await self.gate
        return await super().commit(ops)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[TestKit, GatedStore, GroupCommitter]]:
    store = GatedStore(str(tmp_path / "m.db"))
    async with store, GroupCommitter(store) as committer, TestKit() as kit:
        yield kit, store, committer


def submit(who: Probe, manager: object, v: int | None, seq: int, op: object, **kw: object) -> None:
    request = SubmitOp(tag=seq, c="docs", d="d1", v=v, src="ann", seq=seq, op=op, user="ann", **kw)  # type: ignore[arg-type]
    who.tell(manager, request)  # type: ignore[arg-type]


async def test_mentions_are_reported_after_the_commit(
    parts: tuple[TestKit, GatedStore, GroupCommitter],
) -> None:
    kit, store, committer = parts
    listener = kit.probe("notify")
    config = DocumentConfig(mentions=listener.ref)
    manager = kit.system.spawn(
        lambda: DocumentManager(store=store, committer=committer, hub=None, config=config)
    )
    ann = kit.probe("ann")
    submit(ann, manager, None, 1, {"type": TEXT, "data": "hi "}, kind="create")
    await ann.expect(OpAcked)
    store.gate = asyncio.get_running_loop().create_future()
    with kit.holding():
        submit(ann, manager, 1, 2, [3, "@bob and @cat, "], kind="op")
        await kit.settle()
        assert listener.pending == []  # not before the op is durable
    store.gate.set_result(None)
    store.gate = None
    await ann.expect(OpAcked)
    found = await listener.expect(Mentioned)
    assert (found.collection, found.doc, found.version, found.author) == ("docs", "d1", 1, "ann")
    assert found.names == ("bob", "cat")
    assert all(f"@{n}" in e for n, e in zip(found.names, found.excerpts, strict=True))
    submit(ann, manager, 2, 3, [1, "x"], kind="op")  # the mentions near it stay as they were
    await ann.expect(OpAcked)
    await listener.expect_no_message(within=1)
