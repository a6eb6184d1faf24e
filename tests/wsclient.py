"""A bare WebSocket client of ShareDB's protocol for the tests: frames as dicts, waits with a
timeout on frames (never a sleep)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

SCALE = float(os.environ.get("MAILSLOT_TEST_TIMEOUT_SCALE", "1"))
HANDSHAKE = {"a": "hs", "id": None, "protocol": 1, "protocolMinor": 2}


class Client:
    """One connection. ``wait``: seconds a wait for one frame may take before it fails."""

    def __init__(self, ws: ClientConnection, *, wait: float = 10.0) -> None:
        self.ws = ws
        self.wait = wait * SCALE
        self.seq = 0

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), self.wait))
        return frame

    async def until(self, **fields: Any) -> dict[str, Any]:
        """The next frame whose fields match (earlier frames are skipped)."""
        while True:
            frame = await self.recv()
            if all(frame.get(k) == v for k, v in fields.items()):
                return frame

    async def handshake(self) -> str:
        await self.send(HANDSHAKE)
        reply = await self.until(a="hs")
        return str(reply["id"])

    async def send_op(self, d: str, v: int | None, **body: Any) -> int:
        """Send an op (``op``, ``create`` or ``del`` in ``body``) without waiting; its seq."""
        self.seq += 1
        await self.send({"a": "op", "c": "docs", "d": d, "v": v, "seq": self.seq, **body})
        return self.seq

    async def submit(self, d: str, v: int | None, **body: Any) -> dict[str, Any]:
        """Send an op and wait for its ack (or error); answers the ack."""
        seq = await self.send_op(d, v, **body)
        while True:  # other clients' ops (those this one missed) come first, with their own seq
            frame = await self.until(a="op", seq=seq)
            if "error" in frame or ("op" not in frame and "create" not in frame):
                return frame

    async def close(self) -> None:
        await self.ws.close()


async def connect(
    url: str, *, token: str | None = None, wait: float = 10.0, sock: socket.socket | None = None
) -> Client:
    """A handshaken client of the server at ``url`` (its ``/ws``), signed in with ``token``."""
    ws = await websockets.connect(
        url + (f"?token={token}" if token else ""), max_size=None, sock=sock
    )
    client = Client(ws, wait=wait)
    await client.handshake()
    return client
