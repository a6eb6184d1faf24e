"""``mailslot serve --broker memory://``: the cluster wiring (sharded documents, topics, presence
and notification relays) over the in-process transport, in one process, with real sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.wsclient import connect

from mailslot.collab.cluster import MEMORY_BROKER
from mailslot.server import NodeConfig, RunningServer, start_server

WAIT = 10.0


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = NodeConfig(
        port=0, db=f"sqlite:///{tmp_path}/m.db", broker=MEMORY_BROKER, node_id="solo", shards=8
    )
    running = await start_server(config)
    try:
        yield running
    finally:
        await running.stop()


async def test_edits_and_presence_through_the_in_process_transport(server: RunningServer) -> None:
    ann, bob = await connect(server.ws_url), await connect(server.ws_url)
    await ann.send(json.dumps({"a": "op", "c": "docs", "d": "m", "seq": 1,
                               "create": {"type": "text-unicode", "data": "hi"}}))  # fmt: skip
    await ann.until(a="op", seq=1)
    await bob.send(json.dumps({"a": "s", "c": "docs", "d": "m"}))
    assert (await bob.until(a="s"))["data"]["data"] == "hi"
    for ws in (ann, bob):
        await ws.send(json.dumps({"a": "ps", "ch": "docs.m", "seq": 1}))
        await ws.until(a="ps")

    await ann.send(json.dumps({"a": "op", "c": "docs", "d": "m", "v": 1, "seq": 2, "op": ["!"]}))
    await ann.until(a="op", seq=2)
    assert (await bob.until(a="op", v=1))["op"] == ["!"]
    await ann.send(json.dumps({"a": "p", "ch": "docs.m", "id": "ann-1", "pv": 1,
                               "p": {"index": 1, "length": 0}}))  # fmt: skip
    assert (await bob.until(a="p", id="ann-1"))["p"] == {"index": 1, "length": 0}

    async with httpx.AsyncClient(base_url=server.url) as http:
        health = (await http.get("/healthz")).json()
        assert health["cluster"]["owned"] == list(range(8))
        assert (await http.get("/api/docs/m")).json()["data"] == "!hi"
    await ann.close()
    await bob.close()
