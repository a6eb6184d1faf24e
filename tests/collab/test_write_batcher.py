"""The write batcher: one socket write per connection per loop turn, bounded per connection."""

from __future__ import annotations

import asyncio
from typing import Any

from mailslot.collab.gateway import CLOSE_SLOW_CONSUMER, Connection, GatewayConfig, WriteBatcher
from mailslot.collab.wsframe import text_frame


class FakeSocket:
    """A transport that records writes and holds ``stuck`` bytes the kernel has not taken."""

    def __init__(self, stuck: int = 0) -> None:
        self.writes: list[bytes] = []
        self.stuck = stuck
        self.closed: tuple[int, str] | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def buffered(self) -> int:
        return self.stuck

    def is_closing(self) -> bool:
        return self.closed is not None

    def close_now(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class FakeWebSocket:
    def __init__(self, socket: FakeSocket | None) -> None:
        extensions = {"mailslot.transport": socket} if socket is not None else {}
        self.scope: dict[str, Any] = {"extensions": extensions}

    @classmethod
    def asgi(cls) -> FakeWebSocket:
        """A WebSocket without uvicorn's transport: the gateway queues text for ASGI sends."""
        return cls(None)


def connection(
    batcher: WriteBatcher, *, limit: int, stuck: int = 0, reply: int = 1 << 20
) -> tuple[Connection, Any]:
    sock = FakeSocket(stuck)
    config = GatewayConfig(max_outbound_bytes=limit, max_reply_bytes=reply)
    return Connection(FakeWebSocket(sock), config, batcher), sock  # type: ignore[arg-type]


async def test_frames_of_one_turn_leave_in_one_write_per_connection() -> None:
    batcher = WriteBatcher()
    a, sock_a = connection(batcher, limit=1000)
    b, sock_b = connection(batcher, limit=1000)
    for i in range(5):
        a.write(b"a%d" % i)
        b.write(b"b%d" % i)
    assert (batcher.pending_bytes(a), batcher.pending_bytes(b)) == (10, 10)
    assert sock_a.writes == sock_b.writes == []
    await asyncio.sleep(0)  # the flush is scheduled with call_soon: one loop turn
    assert sock_a.writes == [b"a0a1a2a3a4"]
    assert sock_b.writes == [b"b0b1b2b3b4"]
    assert (batcher.writes, batcher.frames) == (2, 10)
    assert batcher.pending_bytes(a) == batcher.pending_bytes(b) == 0


async def test_bytes_held_by_the_batcher_count_against_the_bound() -> None:
    batcher = WriteBatcher()
    conn, sock = connection(batcher, limit=100, stuck=40)
    for _ in range(6):  # 40 in the kernel's buffer + 6 * 10 held = 100: at the bound, not past
        conn.write(b"x" * 10)
    assert conn.closing is None
    assert batcher.pending_bytes(conn) == 60
    conn.write(b"y")  # past the bound: closed as a slow consumer, its held frames dropped
    assert conn.closing is not None
    assert conn.closing[0] == CLOSE_SLOW_CONSUMER
    assert sock.closed is not None
    assert sock.closed[0] == CLOSE_SLOW_CONSUMER
    assert batcher.pending_bytes(conn) == 0
    await asyncio.sleep(0)
    assert sock.writes == []


async def test_a_normal_close_writes_what_was_held_first() -> None:
    batcher = WriteBatcher()
    conn, sock = connection(batcher, limit=1000)
    conn.write(b"one")
    conn.write(b"two")
    conn.close(1000, "bye")
    assert sock.writes == [b"onetwo"]
    assert batcher.pending_bytes(conn) == 0
    await asyncio.sleep(0)
    assert sock.writes == [b"onetwo"]


async def test_send_all_writes_the_frames_of_a_reply_at_once_each_framed_once() -> None:
    batcher = WriteBatcher()
    a, sock_a = connection(batcher, limit=10_000)
    b, sock_b = connection(batcher, limit=10_000)
    missed = ['{"a":"op","v":1}', '{"a":"op","v":2}']
    a.send_all([*missed, '{"a":"op","ack":"a"}'])
    b.send_all([*missed, '{"a":"op","ack":"b"}'])
    assert (a.frames_out, b.frames_out) == (3, 3)
    await asyncio.sleep(0)
    framed = [text_frame(f.encode()) for f in missed]
    assert sock_a.writes == [b"".join([*framed, text_frame(b'{"a":"op","ack":"a"}')])]
    assert sock_b.writes == [b"".join([*framed, text_frame(b'{"a":"op","ack":"b"}')])]
    assert batcher.framing.hits == 2  # the missed ops were framed for the first client only


async def test_send_all_on_a_closing_connection_writes_nothing() -> None:
    batcher = WriteBatcher()
    conn, sock = connection(batcher, limit=10_000)
    conn.close(1000, "bye")
    conn.send_all(["x", "y"])
    await asyncio.sleep(0)
    assert sock.writes == []
    assert conn.frames_out == 0


def test_without_a_batcher_frames_are_written_at_once_and_framed_plainly() -> None:
    sock = FakeSocket()
    conn = Connection(FakeWebSocket(sock), GatewayConfig(), None)  # type: ignore[arg-type]
    conn.send("one")
    conn.send_all(["two", "three"])
    assert sock.writes == [text_frame(b"one"), text_frame(b"two") + text_frame(b"three")]
    assert conn.frames_out == 3


async def test_a_connection_with_nothing_waiting_takes_one_reply_of_any_size() -> None:
    batcher = WriteBatcher()
    conn, sock = connection(batcher, limit=100)
    conn.send_all(["x" * 80, "y" * 80])  # 164 bytes framed: past the bound, but nothing waited
    assert conn.closing is None
    assert batcher.pending_bytes(conn) == 164
    conn.send("z")  # the client has 164 bytes waiting: the bound applies
    assert conn.closing is not None
    assert conn.closing[0] == CLOSE_SLOW_CONSUMER
    await asyncio.sleep(0)
    assert sock.writes == []  # a slow consumer's held frames are dropped with it


def test_a_reply_past_max_reply_bytes_closes_even_a_client_with_nothing_waiting() -> None:
    batcher = WriteBatcher()
    conn, sock = connection(batcher, limit=100, reply=150)
    conn.send_all(["x" * 80, "y" * 80])  # 164 bytes framed
    assert conn.closing is not None
    assert conn.closing[0] == CLOSE_SLOW_CONSUMER
    assert batcher.pending_bytes(conn) == 0
    assert sock.closed is not None


def test_the_asgi_path_measures_a_reply_in_utf8_bytes() -> None:
    """Without a direct socket, replies queue as text; the reply bound counts bytes, not
    characters (an emoji is 4 bytes)."""
    config = GatewayConfig(max_outbound=1, max_reply_bytes=100)
    ascii_conn = Connection(FakeWebSocket.asgi(), config)  # type: ignore[arg-type]
    ascii_conn.queue(["x" * 40, "y" * 40])  # 80 bytes: nothing waited, under the reply bound
    assert ascii_conn.closing is None
    emoji_conn = Connection(FakeWebSocket.asgi(), config)  # type: ignore[arg-type]
    emoji_conn.queue(["\N{GRINNING FACE}" * 20, "y" * 40])  # 60 characters, 120 bytes
    assert emoji_conn.closing is not None
    assert emoji_conn.closing[0] == CLOSE_SLOW_CONSUMER
