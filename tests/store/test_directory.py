"""Users, memberships, inboxes and dead letters on both backends (SQLite file, fresh PG schema)."""

from __future__ import annotations

import pytest

from mailslot.errors import StoreError
from mailslot.store import Store
from mailslot.store.directory import DeadDelivery, Directory, Notification


def note(id: str, user: str = "bob", *, ts: int = 10, version: int = 1) -> Notification:
    return Notification(
        id=id,
        user=user,
        kind="mention",
        collection="docs",
        doc="d1",
        version=version,
        author="ann",
        excerpt="hi @bob",
        ts=ts,
    )


async def test_users(store: Store) -> None:
    users = Directory(store)
    assert await users.add_user("ann", now=5)
    assert not await users.add_user("ann", now=6)
    assert await users.add_user("bob", now=7)
    ann = await users.user("ann")
    assert ann is not None
    assert (ann.name, ann.created, ann.webhook) == ("ann", 5, None)
    assert await users.user("carol") is None
    assert [u.name for u in await users.users()] == ["ann", "bob"]
    assert await users.count_users() == 2
    assert await users.set_webhook("bob", "http://127.0.0.1:9/hook")
    assert not await users.set_webhook("carol", "http://x")
    bob = await users.user("bob")
    assert bob is not None
    assert bob.webhook == "http://127.0.0.1:9/hook"


async def test_memberships(store: Store) -> None:
    users = Directory(store)
    assert not await users.restricted("docs", "d1")
    await users.grant("docs", "d1", "bob", "read", now=1)
    await users.grant("docs", "d1", "ann", "owner", now=2)
    await users.grant("docs", "d2", "bob", "write", now=3)
    assert await users.restricted("docs", "d1")
    assert [(m.user, m.role) for m in await users.members("docs", "d1")] == [
        ("ann", "owner"),
        ("bob", "read"),
    ]
    await users.grant("docs", "d1", "bob", "write", now=4)
    assert await users.role("docs", "d1", "bob") == "write"
    assert [(m.doc, m.role) for m in await users.memberships("bob")] == [
        ("d1", "write"),
        ("d2", "write"),
    ]
    assert await users.revoke("docs", "d1", "bob")
    assert not await users.revoke("docs", "d1", "bob")
    assert await users.role("docs", "d1", "bob") is None
    with pytest.raises(StoreError, match="unknown role"):
        await users.grant("docs", "d1", "bob", "admin", now=5)  # type: ignore[arg-type]


async def test_inbox_is_idempotent_and_marks_read(store: Store) -> None:
    users = Directory(store)
    assert await users.add_notification(note("n1", ts=10))
    assert not await users.add_notification(note("n1", ts=99))  # redelivered: stored once
    assert await users.add_notification(note("n2", ts=20, version=2))
    assert await users.add_notification(note("n3", "ann", ts=30))
    inbox = await users.notifications("bob")
    assert [n.id for n in inbox] == ["n2", "n1"]
    assert inbox[1].ts == 10
    assert await users.unread_count("bob") == 2
    assert await users.mark_read("bob", ["n1", "n3"], now=50) == 1  # n3 is ann's
    assert [n.id for n in await users.notifications("bob", unread_only=True)] == ["n2"]
    assert await users.mark_read("bob", None, now=60) == 1
    assert await users.unread_count("bob") == 0
    assert await users.unread_count("ann") == 1
    assert (await users.notifications("bob"))[1].read_at == 50


async def test_dead_deliveries(store: Store) -> None:
    users = Directory(store)
    dead = DeadDelivery(
        id="w1",
        user="bob",
        notification_id="n1",
        url="http://127.0.0.1:9/hook",
        attempts=5,
        error="503",
        payload={"id": "n1", "excerpt": "hi"},
        ts=7,
    )
    await users.add_dead_delivery(dead)
    await users.add_dead_delivery(dead)
    assert await users.dead_deliveries() == [dead]
    assert await users.dead_deliveries("bob") == [dead]
    assert await users.dead_deliveries("ann") == []
