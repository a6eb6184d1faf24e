"""The load generator's lean WebSocket client: frames split, others' ops skipped, pings answered."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mailslot.bench._wsload import _Conn
from mailslot.collab.wsframe import text_frame


class Recorder:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def upgraded() -> tuple[_Conn, Recorder]:
    conn = _Conn()
    transport = Recorder()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    assert conn.upgraded.done()
    return conn, transport


def frame(body: dict[str, Any]) -> bytes:
    return text_frame(json.dumps(body).encode())


async def test_the_ack_is_found_among_the_ops_the_client_missed_split_anywhere() -> None:
    conn, _ = upgraded()
    conn.seq = 7
    conn.waiting = asyncio.get_running_loop().create_future()
    missed = [frame({"a": "op", "c": "docs", "d": "x", "v": v, "op": ["a"]}) for v in range(300)]
    big = frame({"a": "op", "c": "docs", "d": "x", "v": 300, "op": ["b" * 70_000]})
    ack = frame({"a": "op", "c": "docs", "d": "x", "v": 301, "src": "me", "seq": 7})
    data = b"".join([*missed, big, ack])
    for at in range(0, len(data), 977):  # TCP splits the stream anywhere, headers included
        conn.data_received(data[at : at + 977])
    assert conn.waiting.done()
    assert conn.waiting.result()["v"] == 301
    assert conn.buffer == b""


async def test_an_error_reply_is_not_taken_for_an_op() -> None:
    conn, _ = upgraded()
    conn.seq = 3
    conn.waiting = asyncio.get_running_loop().create_future()
    error = {"code": "ERR_OP_SUBMIT_REJECTED", "message": "no"}
    conn.data_received(frame({"a": "op", "d": "x", "op": ["a"], "seq": 3, "error": error}))
    assert conn.waiting.result()["error"]["code"] == "ERR_OP_SUBMIT_REJECTED"


async def test_pings_are_answered_and_a_close_closes() -> None:
    conn, transport = upgraded()
    conn.data_received(bytes((0x89, 2)) + b"hi")
    assert transport.written == [bytes((0x8A, 0x82)) + b"\x00\x00\x00\x00hi"]
    conn.data_received(bytes((0x88, 0)))
    assert transport.closed
