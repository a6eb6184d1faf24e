"""The cutover over real sockets: both engines behind one gateway, flags switched at run time over
REST and the CLI, documents moved between ops under load, shadow comparison.

Waits are on frames and replies with timeouts, never on sleeps.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests import wsclient
from tests.wsclient import Client

from mailslot.errors import ConfigError
from mailslot.migrate.cutover import CutoverConfig
from mailslot.migrate.cutover_http import _changed, add_cli, run_cli, serve_options
from mailslot.migrate.flags import FlagConfig
from mailslot.server import NodeConfig, RunningServer, start_server

WAIT = 20.0


async def connect(server: RunningServer) -> Client:
    return await wsclient.connect(server.ws_url, wait=WAIT)


async def _server(tmp_path: Path, **options: Any) -> AsyncIterator[RunningServer]:
    config = NodeConfig(port=0, db=f"sqlite:///{tmp_path}/cut.db", **options)
    running = await start_server(config)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async for s in _server(
        tmp_path, engine="cutover", cutover=CutoverConfig(compare_every=2, stall_after=60)
    ):
        yield s


async def put_flags(server: RunningServer, **flags: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        reply = await http.put("/api/cutover", json=flags)
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result


async def get_stats(server: RunningServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        result: dict[str, Any] = (await http.get("/api/cutover")).json()
        return result


@pytest.mark.parametrize("engine", ["legacy", "actor"])
async def test_each_engine_serves_the_gateway_and_the_hub(
    server: RunningServer, engine: str
) -> None:
    if engine == "actor":
        await put_flags(server, enabled=True, percentage=100)
    ann, bob = await connect(server), await connect(server)
    created = await ann.submit("d1", None, create={"type": "text-unicode", "data": "hi"})
    assert created["v"] == 0
    await bob.send({"a": "s", "c": "docs", "d": "d1"})
    assert (await bob.until(a="s"))["data"]["data"] == "hi"
    ack = await ann.submit("d1", 1, op=[2, " there"])
    assert (ack["v"], "op" in ack) == (1, False)
    seen = await bob.until(a="op")
    assert (seen["v"], seen["op"]) == (1, [2, " there"])
    # the author gets no echo of its own op: the next frame it sees is the reply to a ping
    await ann.send({"a": "pp"})
    assert await ann.recv() == {"a": "pp"}
    stats = await get_stats(server)
    assert stats["engines"][engine]["requests"] >= 3
    other = "actor" if engine == "legacy" else "legacy"
    assert stats["engines"][other]["requests"] == 0
    async with httpx.AsyncClient(base_url=server.url) as http:
        doc = (await http.get("/api/docs/d1")).json()
    assert (doc["v"], doc["data"]) == (2, "hi there")
    await ann.close()
    await bob.close()


async def test_documents_move_between_ops_and_lose_nothing(server: RunningServer) -> None:
    """Two editors keep typing while the flags go to 100%, back to 0% by the kill switch, and to
    100% again: every op is acked once, versions are gap-free, and the text has every edit."""
    writers = [await connect(server) for _ in range(2)]
    await writers[0].submit("d1", None, create={"type": "text-unicode", "data": ""})
    acked: list[int] = []
    done = asyncio.Event()
    progress: asyncio.Queue[int] = asyncio.Queue()

    async def type_(i: int, client: Client) -> None:
        v = 1
        n = 0
        while not done.is_set() or n < 15:
            ack = await client.submit("d1", v, op=[f"<{i}.{n}>"])
            assert "error" not in ack, ack
            acked.append(ack["v"])
            progress.put_nowait(ack["v"])
            v = ack["v"] + 1
            n += 1

    tasks = [asyncio.create_task(type_(i, c)) for i, c in enumerate(writers)]
    moves = []
    for flags in (
        {"enabled": True, "percentage": 100},
        {"enabled": True, "percentage": 100, "kill_switch": True},
        {"enabled": True, "percentage": 100},
    ):
        while len(acked) < 10 * (len(moves) + 1):  # let some ops through on each engine
            await asyncio.wait_for(progress.get(), WAIT)
        moves.append(await put_flags(server, **flags))
    done.set()
    await asyncio.gather(*tasks)
    assert sorted(acked) == list(range(1, len(acked) + 1))
    stats = await get_stats(server)
    assert stats["moves"] == 3
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert "mailslot_cutover_moves_total 3.0" in (await http.get("/metrics")).text
    assert stats["engines"]["legacy"]["requests"] > 0
    assert stats["engines"]["actor"]["requests"] > 0
    async with httpx.AsyncClient(base_url=server.url) as http:
        doc = (await http.get("/api/docs/d1")).json()
        history = (await http.get("/api/docs/d1/history?limit=1000")).json()
    assert doc["v"] == len(acked) + 1
    for i in range(2):
        for n in range(15):
            assert f"<{i}.{n}>" in doc["data"]
    assert [o["v"] for o in history["ops"]] == list(range(len(acked), -1, -1))
    for c in writers:
        await c.close()


@pytest.mark.parametrize("serving", ["legacy", "actor"])
async def test_shadow_mode_compares_versions_and_texts(server: RunningServer, serving: str) -> None:
    flags: dict[str, Any] = {"shadow": True}
    if serving == "actor":
        flags.update(enabled=True, percentage=100)
    ann, bob = await connect(server), await connect(server)
    await ann.submit("d1", None, create={"type": "text-unicode", "data": "x"})
    await ann.submit("d1", 1, op=[1, "a"])  # before shadow mode: seeded from the store later
    await put_flags(server, **flags)
    for n in range(6):  # two editors on stale versions: the shadow must transform the same way
        await asyncio.gather(
            ann.submit("d1", 2 + 2 * n, op=["A"]), bob.submit("d1", 2 + 2 * n, op=["B"])
        )
    shadow: dict[str, Any] = {}
    for _ in range(200):  # the shadow runs behind: wait for it through the REST API
        shadow = (await get_stats(server))["shadow"]
        if shadow["matched"] + shadow["mismatched"] >= 12 and shadow["texts_compared"] >= 6:
            break
        await ann.send({"a": "pp"})
        await ann.until(a="pp")
    assert shadow["mismatched"] == 0
    assert shadow["matched"] == 12
    assert shadow["texts_compared"] >= 6
    assert shadow["texts_mismatched"] == 0
    assert shadow["reseeded"] == 1
    async with httpx.AsyncClient(base_url=server.url) as http:
        metrics = (await http.get("/metrics")).text
    assert 'mailslot_cutover_shadow_total{outcome="matched"} 12.0' in metrics
    assert f'mailslot_cutover_requests_total{{engine="{serving}"}}' in metrics
    assert 'mailslot_cutover_shadow_total{outcome="mismatched"}' not in metrics
    await ann.close()
    await bob.close()


async def test_rest_names_bad_flags_and_the_cli_changes_them(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        bad = await http.put("/api/cutover", json={"percentage": 101})
        assert bad.status_code == 400
        assert "$.percentage" in bad.json()["error"]
        unknown = await http.put("/api/cutover", content=b'{"percent": 5}')
        assert unknown.status_code == 400
        assert "percent" in unknown.json()["error"]
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["cutover", "set", "--url", server.url, "--enable", "--percentage", "30",
         "--allow-doc", "internal-1", "--shadow", "on"]
    )  # fmt: skip
    assert await asyncio.to_thread(run_cli, args) == 0
    flags = (await get_stats(server))["flags"]
    assert (flags["enabled"], flags["percentage"], flags["shadow"]) == (True, 30, True)
    assert flags["allow_docs"] == ["internal-1"]
    down = parser.parse_args(["cutover", "show", "--url", "http://127.0.0.1:9"])
    assert await asyncio.to_thread(run_cli, down) == 1


async def test_the_actor_engine_alone_has_no_cutover(tmp_path: Path) -> None:
    async for s in _server(tmp_path):
        async with httpx.AsyncClient(base_url=s.url) as http:
            reply = await http.get("/api/cutover")
        assert reply.status_code == 404
        assert "--engine" in reply.json()["error"]


def test_cli_flag_changes_are_merged_and_checked() -> None:
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    current = {"enabled": True, "percentage": 10, "allow_docs": ["a"], "group_id": "g"}
    args = parser.parse_args(["cutover", "set", "--allow-doc", "b", "--kill-switch", "on"])
    merged = _changed(current, args)
    assert merged == FlagConfig(
        enabled=True, percentage=10, allow_docs=frozenset({"a", "b"}), group_id="g",
        kill_switch=True,
    )  # fmt: skip
    too_much = parser.parse_args(["cutover", "set", "--percentage", "300"])
    with pytest.raises(ConfigError, match="percentage"):
        _changed(current, too_much)


def test_serve_options_refuse_what_needs_the_cutover() -> None:
    args = argparse.Namespace(
        engine="actor", flags=None, plant_deadlock=True, stall_timeout=None, legacy_workers=32,
        no_shadow=False,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="--engine"):
        serve_options(args)
    args.engine, args.flags = "cutover", '{"percentage": "x"}'
    with pytest.raises(ConfigError, match="percentage"):
        serve_options(args)
    args.flags = '{"enabled": true}'
    options = serve_options(args)
    assert options["flags"] == FlagConfig(enabled=True)
    assert options["legacy"].lock_order_bug is True


async def test_a_document_follows_its_owner_on_the_allowlist(server: RunningServer) -> None:
    """The owner is the user whose create the router routed; an allowed owner's documents move."""
    from mailslot.collab.protocol.docs import OpAcked, SubmitOp

    for doc, user in (("mine", "alice"), ("theirs", "bob")):
        create = SubmitOp(
            tag=1, c="docs", d=doc, v=None, src=f"rest-{doc}", seq=1, kind="create",
            op={"type": "http://sharejs.org/types/text-unicode", "data": ""}, user=user,
        )  # fmt: skip
        assert isinstance(await server.node.ask_document(create), OpAcked)
    stats = await put_flags(server, enabled=True, allow_users=["alice"])
    assert stats["engines"]["actor"]["documents"] == 1
    assert stats["engines"]["legacy"]["documents"] == 1
    assert stats["moves"] == 1
