"""Notification dispatchers on the virtual clock, a real SQLite directory and a fake webhook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.collab.recording_peers import RecordingPeers

from mailslot.collab.mentions import Mentioned
from mailslot.collab.notify import (
    NotificationManager,
    NotifyConfig,
    Online,
    Shared,
    UnreadChanged,
    UserFrame,
    notification_id,
)
from mailslot.collab.peers import Peers
from mailslot.collab.protocol.docs import Push
from mailslot.meters import Meters
from mailslot.store.directory import Directory
from mailslot.store.sqlite import SqliteStore
from mailslot.testing import Probe, TestKit


class FakeHook:
    """A webhook endpoint that answers with the statuses it is given (then 200)."""

    def __init__(self, *statuses: int | Exception) -> None:
        self.statuses = list(statuses)
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.calls.append((url, json.loads(body), headers))
        status = self.statuses.pop(0) if self.statuses else 200
        if isinstance(status, Exception):
            raise status
        return status


class Env:
    def __init__(
        self,
        kit: TestKit,
        directory: Directory,
        hook: FakeHook,
        peers: Peers | None = None,
        **options: Any,
    ) -> None:
        self.kit = kit
        self.directory = directory
        self.meters = Meters()
        self.ms = 1_000
        config = NotifyConfig(poster=hook, now_ms=self.now_ms, meters=self.meters, **options)
        self.manager = kit.system.spawn(
            lambda: NotificationManager(directory=directory, config=config, peers=peers),
            name="notify",
        )

    def now_ms(self) -> int:
        self.ms += 1
        return self.ms

    def mention(self, *names: str, v: int = 1, author: str = "ann", doc: str = "d1") -> None:
        self.manager.tell(
            Mentioned(
                collection="docs",
                doc=doc,
                version=v,
                author=author,
                names=names,
                excerpts=tuple(f"hi @{n}" for n in names),
            )
        )

    async def online(self, user: str) -> Probe:
        session = self.kit.probe(f"session-{user}")
        session.tell(self.manager, Online(user))
        await self.kit.settle()
        return session


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[TestKit, Directory]]:
    async with SqliteStore(tmp_path / "n.db") as store, TestKit(seed=3) as kit:
        directory = Directory(store)
        for name in ("ann", "bob", "cat"):
            await directory.add_user(name, now=1)
        yield kit, directory


async def pushed(session: Probe) -> dict[str, Any]:
    push = await session.expect(Push)
    decoded: dict[str, Any] = json.loads(push.frame)
    return decoded


async def test_a_mention_goes_to_the_inbox_and_live_once(parts: tuple[TestKit, Directory]) -> None:
    kit, directory = parts
    env = Env(kit, directory, FakeHook())
    bob = await env.online("bob")
    env.mention("bob", "nobody", "ann", v=4)  # nobody is not a user; ann mentions herself
    got = await pushed(bob)
    assert got["a"] == "x-notify"
    assert got["unread"] == 1
    n = got["notification"]
    assert (n["kind"], n["d"], n["v"], n["author"], n["excerpt"], n["read"]) == (
        "mention",
        "d1",
        4,
        "ann",
        "hi @bob",
        False,
    )
    assert n["id"] == notification_id("mention", "docs", "d1", 4, "bob")
    env.mention("bob", v=4)  # the same op again (a redelivery): nothing new
    await bob.expect_no_message(within=5)
    assert [x.id for x in await directory.notifications("bob")] == [n["id"]]
    assert await directory.notifications("ann") == []
    assert await directory.notifications("nobody") == []
    assert env.meters.notify_duplicates.value == 1
    assert env.meters.notify_created.labels("mention").value == 1

    await directory.mark_read("bob", None, now=5)
    bob.tell(env.manager, UnreadChanged("bob"))
    assert await pushed(bob) == {"a": "x-unread", "unread": 0}


async def test_mentions_respect_access_and_shares_notify(parts: tuple[TestKit, Directory]) -> None:
    kit, directory = parts
    env = Env(kit, directory, FakeHook())
    await directory.grant("docs", "secret", "ann", "owner", now=1)
    cat = await env.online("cat")
    env.mention("cat", doc="secret")  # cat may not read it: no notification, no excerpt
    await cat.expect_no_message(within=5)
    await directory.grant("docs", "secret", "cat", "read", now=2)
    env.manager.tell(
        Shared(user="cat", collection="docs", doc="secret", role="read", by="ann", at=2)
    )
    got = await pushed(cat)
    assert (got["notification"]["kind"], got["notification"]["author"]) == ("share", "ann")
    env.mention("cat", doc="secret", v=9)
    assert (await pushed(cat))["unread"] == 2
    # the inbox holds them whether or not a session is open
    assert [n.kind for n in await directory.notifications("cat")] == ["mention", "share"]


async def test_webhook_retries_with_backoff_and_one_idempotency_key(
    parts: tuple[TestKit, Directory],
) -> None:
    kit, directory = parts
    hook = FakeHook(503, OSError("connection refused"), 200)
    env = Env(kit, directory, hook, backoff=1.0, max_attempts=5)
    await directory.set_webhook("bob", "http://127.0.0.1:9/hook")
    env.mention("bob", v=2)
    await kit.settle()
    assert len(hook.calls) == 1
    await kit.advance(0.9)
    assert len(hook.calls) == 1  # the first retry waits 1 s
    await kit.advance(0.2)
    assert len(hook.calls) == 2
    await kit.advance(1.8)  # t = 2.9; the second attempt was at t = 1.0
    assert len(hook.calls) == 2  # the second retry waits 2 s
    await kit.advance(0.2)
    assert len(hook.calls) == 3
    keys = {headers["idempotency-key"] for _, _, headers in hook.calls}
    assert keys == {notification_id("mention", "docs", "d1", 2, "bob")}
    assert hook.calls[0][1]["notification"]["excerpt"] == "hi @bob"
    assert env.meters.notify_webhook.labels("delivered").value == 1
    assert env.meters.notify_webhook.labels("retried").value == 2
    assert await directory.dead_deliveries() == []


async def test_an_open_breaker_fails_fast_and_deliveries_end_in_dead_letters(
    parts: tuple[TestKit, Directory],
) -> None:
    kit, directory = parts
    hook = FakeHook(*[500] * 20)
    env = Env(kit, directory, hook, backoff=1.0, max_attempts=4, fail_max=2, reset_timeout=3600)
    await directory.set_webhook("bob", "http://127.0.0.1:9/hook")
    env.mention("bob", v=1)
    await kit.advance(60)
    # two real attempts opened the breaker; the last two failed fast without calling
    assert len(hook.calls) == 2
    dead = await directory.dead_deliveries("bob")
    assert len(dead) == 1
    assert (dead[0].attempts, dead[0].url) == (4, "http://127.0.0.1:9/hook")
    assert "circuit" in dead[0].error
    assert dead[0].payload["id"] == notification_id("mention", "docs", "d1", 1, "bob")
    assert env.meters.notify_webhook.labels("dead").value == 1
    # the inbox has it all the same
    assert len(await directory.notifications("bob")) == 1


async def test_dispatchers_passivate_and_come_back(parts: tuple[TestKit, Directory]) -> None:
    kit, directory = parts
    env = Env(kit, directory, FakeHook(), idle_timeout=10)
    env.mention("bob", v=1)
    await kit.settle()
    assert kit.system.statistics().by_type["NotificationDispatcher"].actors == 1
    await kit.advance(30)
    stats = kit.system.statistics().by_type.get("NotificationDispatcher")
    assert stats is None or stats.actors == 0
    env.mention("bob", v=2)
    await kit.settle()
    assert len(await directory.notifications("bob")) == 2


# ------------------------------------------------------------------ on a cluster: other nodes


@pytest.fixture
async def clustered(parts: tuple[TestKit, Directory]) -> tuple[Env, RecordingPeers]:
    kit, directory = parts
    peers = RecordingPeers(kit)
    return Env(kit, directory, FakeHook(), peers=peers.peers), peers


async def test_live_copies_go_to_the_users_sessions_on_other_nodes(
    clustered: tuple[Env, RecordingPeers],
) -> None:
    env, peers = clustered
    directory = env.directory
    env.mention("bob", v=2)  # bob has no session on this node
    relay = await peers.probe.expect(UserFrame)
    assert (relay.user, relay.origin) == ("bob", "n1")
    got = json.loads(relay.frame)
    assert (got["a"], got["unread"], got["notification"]["v"]) == ("x-notify", 1, 2)
    assert [n.version for n in await directory.notifications("bob")] == [2]
    bob = env.kit.probe("session-bob")
    bob.tell(env.manager, UnreadChanged("bob"))
    assert json.loads((await peers.probe.expect(UserFrame)).frame) == {"a": "x-unread", "unread": 1}
    await bob.expect_no_message(within=1)  # not online here: nothing local


async def test_live_copies_from_other_nodes_reach_local_sessions_once(
    clustered: tuple[Env, RecordingPeers],
) -> None:
    env, peers = clustered
    kit, directory = env.kit, env.directory
    bob = await env.online("bob")
    assert peers.bound == [("bob", True)]
    frame = json.dumps({"a": "x-unread", "unread": 7})
    env.manager.tell(UserFrame("bob", frame, "n2"))
    assert json.loads((await bob.expect(Push)).frame) == {"a": "x-unread", "unread": 7}
    await peers.probe.expect_no_message(within=1)  # not sent back out
    env.manager.tell(UserFrame("bob", frame, "n1"))  # this node's own, back from the broker
    env.manager.tell(UserFrame("cat", frame, "n2"))  # nobody of cat's here: no dispatcher
    await bob.expect_no_message(within=1)
    assert kit.system.lookup("/user/notify/u:cat") is None
    assert await directory.notifications("bob") == []  # a live copy stores nothing

    await kit.system.stop(bob.ref)
    await kit.settle()
    assert peers.bound == [("bob", True), ("bob", False)]
