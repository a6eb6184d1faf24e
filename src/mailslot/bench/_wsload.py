"""A WebSocket load generator speaking ShareDB's protocol: K clients typing into D documents.

Each client is one connection with one op in flight at a time (as a ShareDB client has per
document). With ``D <= K`` client ``i`` types into document ``i % D`` (``K/D`` editors per
document); with ``D > K`` it goes round its documents ``i, i+K, i+2K, ...``. An op inserts a short
string at the start of the text, against the version the client last knew (from its own acks), so
the server transforms it past whatever the other editors committed since; one op in
``mention_every`` mentions someone (``@ann``), which the old engine's notification path handles.

Latency is measured from sending an op to reading its ack, for ops sent after the warm-up and acked
before the end. Frames carrying other clients' ops (those an ack says the author missed) are not
parsed. Every request loop is bounded by the duration and every wait by ``op_timeout``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

__all__ = ["LoadResult", "create_documents", "run_load"]


@dataclass
class LoadResult:
    """What the clients saw in the measured window."""

    acks: int = 0
    errors: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_codes: dict[str, int] = field(default_factory=dict)


async def _handshake(ws: websockets.ClientConnection) -> str:
    await ws.send('{"a":"hs","id":null,"protocol":1,"protocolMinor":2}')
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("a") == "hs":
            return str(frame["id"])


async def create_documents(url: str, names: list[str], *, batch: int = 50) -> None:
    """Create text documents ``names`` over one connection, ``batch`` ops in flight."""
    async with websockets.connect(url, max_size=None) as ws:
        await _handshake(ws)
        seq = 0
        for start in range(0, len(names), batch):
            chunk = names[start : start + batch]
            for name in chunk:
                seq += 1
                create = {"type": "text-unicode", "data": ""}
                await ws.send(
                    json.dumps({"a": "op", "c": "docs", "d": name, "v": None, "seq": seq,
                                "create": create})
                )  # fmt: skip
            waiting = len(chunk)
            while waiting:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame.get("a") == "op" and "op" not in frame:
                    waiting -= 1
                    error = frame.get("error")
                    if error and error.get("code") != "ERR_DOC_ALREADY_CREATED":
                        raise RuntimeError(f"cannot create {frame.get('d')}: {error}")


class _Conn(asyncio.Protocol):
    """A lean WebSocket client connection (RFC 6455): text frames in and out, pings answered.

    The ``websockets`` client spends tens of microseconds per frame; a client at high contention
    receives every other editor's op with its ack (hundreds of frames per op), which would make
    the load generator, not the server, the bottleneck. This one splits frames with a few slices
    and skips frames carrying other clients' ops with one substring test. Client frames are sent
    with an all-zero mask key (valid: the server XORs with it and gets the payload back).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting: asyncio.Future[dict[str, Any]] | None = None
        self.seq = -1
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for f in (self.upgraded, self.waiting):
            if f is not None and not f.done():
                f.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(bytes(buf[:80]).decode()))
                return
            del buf[: end + 4]
            self.upgraded.set_result(None)
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            start = pos + head
            end = start + length
            if n < end:
                break
            pos = end
            if opcode == 0x1:
                # most text frames are other clients' ops, sent with our ack: skipped in place,
                # without copying them out of the buffer
                waiting = self.waiting
                if waiting is None or waiting.done() or self.others_op(buf, start, end):
                    continue
                self.text(bytes(buf[start:end]))
            elif opcode == 0x9:
                self.write(bytes(buf[start:end]), 0xA)
            elif opcode == 0x8 and self.transport is not None:
                self.transport.close()
        del buf[:pos]

    @staticmethod
    def others_op(buf: bytearray, start: int, end: int) -> bool:
        """True if the text frame at ``buf[start:end]`` carries an op (not an ack or error)."""
        if buf.find(b'"error"', start, end) >= 0:
            return False
        return buf.find(b'"op":[', start, end) >= 0 or buf.find(b'"create":', start, end) >= 0

    def text(self, payload: bytes) -> None:
        waiting = self.waiting
        if waiting is None or waiting.done():
            return
        frame = json.loads(payload)
        if frame.get("seq") == self.seq or (self.seq < 0 and frame.get("a") == "hs"):
            waiting.set_result(frame)

    def write(self, payload: bytes, opcode: int = 0x1) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        if self.transport is not None:
            self.transport.write(head + b"\x00\x00\x00\x00" + payload)

    async def request(self, payload: bytes, seq: int) -> dict[str, Any]:
        """Send a frame and wait for the reply with ``seq`` (-1: the handshake reply)."""
        self.seq = seq
        self.waiting = asyncio.get_running_loop().create_future()
        self.write(payload)
        return await self.waiting


async def _open(url: str) -> _Conn:
    hostport, _, path = url.removeprefix("ws://").partition("/")
    host, _, port = hostport.partition(":")
    loop = asyncio.get_running_loop()
    transport, conn = await loop.create_connection(_Conn, host, int(port or 80))
    conn.transport = transport
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    conn.transport.write(request.encode())
    await asyncio.wait_for(conn.upgraded, 10)
    hello = b'{"a":"hs","id":null,"protocol":1,"protocolMinor":2}'
    await asyncio.wait_for(conn.request(hello, -1), 10)
    return conn


async def run_load(
    url: str,
    docs: list[str],
    *,
    clients: int,
    duration: float,
    warmup: float,
    op_timeout: float = 5.0,
    mention_every: int = 20,
    on_window: Callable[[str], None] | None = None,
) -> LoadResult:
    """Run ``clients`` typists over ``docs`` for ``warmup + duration`` seconds.

    ``on_window("start")`` and ``on_window("end")`` are called at the edges of the measured
    window (the caller samples the server's CPU there).
    """
    result = LoadResult()
    conns: list[_Conn] = []
    for start in range(0, clients, 32):  # connect in batches: a burst of handshakes is not the test
        batch = [_open(url) for _ in range(start, min(clients, start + 32))]
        conns.extend(await asyncio.gather(*batch))
    loop = asyncio.get_running_loop()
    window_start = loop.time() + warmup
    end = window_start + duration

    async def client(i: int, conn: _Conn) -> None:
        mine = [docs[i % len(docs)]] if len(docs) <= clients else docs[i::clients]
        versions = dict.fromkeys(mine, 1)
        seq = 0
        while not conn.closed and loop.time() < end:
            d = mine[seq % len(mine)]
            seq += 1
            text = "@ann " if (seq + i) % mention_every == 0 else f"{i}."  # staggered
            payload = (
                f'{{"a":"op","c":"docs","d":"{d}","v":{versions[d]},"seq":{seq},'
                f'"op":[{json.dumps(text)}]}}'
            ).encode()
            sent = loop.time()
            try:
                frame = await asyncio.wait_for(conn.request(payload, seq), op_timeout)
            except TimeoutError:
                if sent >= window_start:
                    result.timeouts += 1
                continue
            acked = loop.time()
            counted = sent >= window_start and acked <= end
            error = frame.get("error")
            if isinstance(error, dict):
                if counted:
                    result.errors += 1
                    code = str(error.get("code"))
                    result.error_codes[code] = result.error_codes.get(code, 0) + 1
                continue
            versions[d] = int(frame["v"]) + 1
            if counted:
                result.acks += 1
                result.latencies.append(acked - sent)

    async def window() -> None:
        await asyncio.sleep(max(0.0, window_start - loop.time()))
        if on_window is not None:
            on_window("start")
        await asyncio.sleep(max(0.0, end - loop.time()))
        if on_window is not None:
            on_window("end")

    try:
        await asyncio.gather(window(), *(client(i, c) for i, c in enumerate(conns)))
    finally:
        for c in conns:
            if c.transport is not None:
                c.transport.close()
    result.seconds = duration
    return result
