"""The gateway over real sockets: an in-process server (uvicorn) and websockets clients.

These wait on events with timeouts (a frame arriving, a socket closing), never on sleeps.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets
from tests import wsclient
from tests.wsclient import Client

from mailslot.collab.document import DocumentConfig
from mailslot.collab.gateway import GatewayConfig
from mailslot.server import Node, NodeConfig, RunningServer, start_server
from mailslot.store import SnapshotParts
from mailslot.store.sqlite import SqliteStore

TEXT = "http://sharejs.org/types/text-unicode"
WAIT = 10.0


def _config(tmp_path: Path, *, direct_writes: bool) -> NodeConfig:
    return NodeConfig(
        direct_writes=direct_writes,
        port=0,
        db=f"sqlite:///{tmp_path}/gw.db",
        gateway=GatewayConfig(max_outbound=200, max_outbound_bytes=32 * 1024, max_frame=4096),
        ws_max_size=64 * 1024,
    )


@pytest.fixture(params=["direct", "asgi"])
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    running = await start_server(_config(tmp_path, direct_writes=request.param == "direct"))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def direct_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server whose gateway writes frames to the sockets itself (the default)."""
    running = await start_server(_config(tmp_path, direct_writes=True))
    try:
        yield running
    finally:
        await running.stop()


async def close_code(client: Client, *frames: str) -> int:
    """Send ``frames``, then read until the server closes the socket; its close code."""
    try:
        for frame in frames:
            await client.send(frame)
        while True:
            await client.recv()
    except websockets.ConnectionClosed as exc:
        closed = exc
    if closed.rcvd is None:
        raise AssertionError("the socket closed without a close frame from the server")
    return closed.rcvd.code


async def connect(server: RunningServer, *, rcvbuf: int | None = None) -> Client:
    sock = None
    if rcvbuf is not None:
        # a small, fixed receive buffer (no autotuning up to tens of MB): a client that stops
        # reading fills it quickly
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await wsclient.connect(server.ws_url, sock=sock)


async def test_two_clients_edit_and_see_each_other(server: RunningServer) -> None:
    ann, bob = await connect(server), await connect(server)
    await ann.send_op("d1", None, create={"type": "text-unicode", "data": "hello"})
    assert (await ann.until(a="op"))["v"] == 0
    await bob.send({"a": "s", "c": "docs", "d": "d1"})
    sub = await bob.until(a="s")
    assert sub["data"] == {"v": 1, "type": TEXT, "data": "hello"}
    await ann.send_op("d1", 1, op=[5, " world 🌍"])
    ack = await ann.until(a="op")
    assert (ack["v"], ack["seq"]) == (1, 2)
    assert "op" not in ack
    broadcast = await bob.until(a="op")
    assert (broadcast["v"], broadcast["op"]) == (1, [5, " world 🌍"])
    async with httpx.AsyncClient(base_url=server.url) as http:
        doc = (await http.get("/api/docs/d1")).json()
        assert (doc["v"], doc["data"]) == (2, "hello world 🌍")
        history = (await http.get("/api/docs/d1/history")).json()
        assert [o["v"] for o in history["ops"]] == [1, 0]


async def test_bad_frames_get_error_replies_and_the_socket_stays_open(
    server: RunningServer,
) -> None:
    c = await connect(server)
    await c.send("{not json")
    assert (await c.recv())["error"]["code"] == "ERR_MESSAGE_BADLY_FORMED"
    await c.send({"a": "what", "x": 1})
    reply = await c.recv()
    assert reply["a"] == "what"
    assert "unknown action" in reply["error"]["message"]
    await c.send_op("nope", 0, op=["x"])
    assert (await c.recv())["error"]["code"] == "ERR_DOC_DOES_NOT_EXIST"
    await c.send({"a": "pp"})
    assert await c.recv() == {"a": "pp"}


async def test_a_client_sending_only_garbage_is_closed_with_1008(server: RunningServer) -> None:
    c = await connect(server)
    assert await close_code(c, *["garbage"] * 50) == 1008


async def test_frames_over_the_limits(server: RunningServer) -> None:
    c = await connect(server)
    await c.send({"a": "pp", "pad": "x" * 5000})  # over the session's 4096 limit: error reply
    assert "exceeds the limit" in (await c.recv())["error"]["message"]
    assert await close_code(c, "x" * 100_000) == 1009  # over the server's 64 KiB: closed


async def test_a_client_that_stops_reading_is_closed_and_memory_stays_bounded(
    server: RunningServer,
) -> None:
    writer, reader = await connect(server), await connect(server, rcvbuf=8192)
    await writer.send_op("d1", None, create={"type": "text-unicode", "data": ""})
    await writer.until(a="op")
    await reader.send({"a": "s", "c": "docs", "d": "d1"})
    await reader.until(a="s")
    # the client stops reading its socket (and its library may not resume behind our back)
    transport = reader.ws.transport
    transport.pause_reading()
    resume = transport.resume_reading
    transport.resume_reading = lambda: None  # type: ignore[method-assign]
    version = 1
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(400):
            for _ in range(20):  # big ops fill the TCP buffers, then the outbound queue
                await writer.send_op("d1", version, op=[secrets.token_hex(1000)])
                version += 1
            for _ in range(20):
                await writer.until(a="op")
            health = (await http.get("/healthz")).json()["gateway"]
            # bounded: direct writes stop at max_outbound_bytes per connection, the ASGI path at
            # max_outbound frames
            assert health["outbound_buffered"] <= 2 * (32 * 1024 + 2100)
            assert health["outbound_queued"] <= 2 * 200
            if health["closed_slow"]:
                break
        assert health["closed_slow"] == 1
    transport.resume_reading = resume  # type: ignore[method-assign]
    transport.resume_reading()
    assert await close_code(reader) == 4008


async def test_a_client_far_behind_catches_up_in_one_reply_larger_than_the_bounds(
    server: RunningServer,
) -> None:
    # a client back from a long time offline asks for every op since its version: one reply of
    # 300 frames and ~66 KB, past both the frame bound (200) and the byte bound (32 KB). Closing
    # it as a slow consumer would close it again on every reconnect: it must get the reply.
    writer = await connect(server)
    await writer.send_op("d1", None, create={"type": "text-unicode", "data": ""})
    await writer.until(a="op")
    for v in range(1, 301):
        await writer.send_op("d1", v, op=["x" * 150])
        await writer.until(a="op", seq=writer.seq)
    late = await connect(server)
    await late.send({"a": "s", "c": "docs", "d": "d1", "v": 1})
    versions = []
    while True:
        frame = await late.recv()
        if frame["a"] == "s":
            break
        versions.append(frame["v"])
    assert versions == list(range(1, 301))
    assert "error" not in frame
    # and it keeps being served
    await late.send_op("d1", 301, op=["y"])
    assert (await late.until(a="op", seq=late.seq))["v"] == 301


async def test_missed_ops_are_framed_once_per_node_and_writes_are_joined(
    direct_server: RunningServer,
) -> None:
    server = direct_server  # the ASGI path sends text: no node-wide framing, no joined writes
    writer = await connect(server)
    await writer.send_op("d3", None, create={"type": "text-unicode", "data": ""})
    await writer.until(a="op")
    for v in range(1, 21):
        await writer.send_op("d3", v, op=[f"<{v}>"])
        await writer.until(a="op", seq=writer.seq)
    async with httpx.AsyncClient(base_url=server.url) as http:
        before = (await http.get("/healthz")).json()["writes"]
        for _ in range(2):  # two clients back from offline catch up on the same 20 ops
            late = await connect(server)
            await late.send({"a": "s", "c": "docs", "d": "d3", "v": 1})
            assert [(await late.recv())["v"] for _ in range(20)] == list(range(1, 21))
            assert (await late.recv())["a"] == "s"
        after = (await http.get("/healthz")).json()["writes"]
    assert after["frame_cache_hits"] - before["frame_cache_hits"] >= 20  # the second one's
    assert (
        0
        < after["socket_writes"] - before["socket_writes"]
        <= (after["payloads"] - before["payloads"])
    )


class SlowLoadStore(SqliteStore):
    """The real SQLite store whose document loads wait for the test (a slow disk)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate: asyncio.Future[None] | None = None

    async def load(self, collection: str, doc: str) -> SnapshotParts:
        if self.gate is not None:
            await self.gate
        return await super().load(collection, doc)


async def test_a_congested_document_stops_the_sessions_feeding_it_from_reading(
    tmp_path: Path,
) -> None:
    store = SlowLoadStore(str(tmp_path / "slow.db"))
    config = NodeConfig(port=0, documents=DocumentConfig(mailbox_capacity=20))
    running = await start_server(config, node=Node(config, store=store))
    try:
        c = await connect(running)
        store.gate = asyncio.get_running_loop().create_future()
        await c.send_op("d2", None, create={"type": "text-unicode", "data": ""})
        for v in range(1, 51):  # the document is still loading: these wait in its mailbox
            await c.send_op("d2", v, op=[f"<{v}>"])
        async with httpx.AsyncClient(base_url=running.url) as http:
            for _ in range(500):  # until the session has read past the document's watermark
                health = (await http.get("/healthz")).json()["gateway"]
                if health["reading_paused"]:
                    break
            assert health["reading_paused"] == 1
            store.gate.set_result(None)
            acks = [await c.until(a="op") for _ in range(51)]
            assert [a["v"] for a in acks] == list(range(51))
            assert (await http.get("/healthz")).json()["gateway"]["reading_paused"] == 0
    finally:
        await running.stop()
