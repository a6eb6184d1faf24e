"""The floor of the Python stack for `mailslot bench collab`: a relay, not an editing server.

    python bench/relay_server.py --port 8000 [--host 127.0.0.1]

It serves the part of ShareDB's protocol that the load generator's raw clients speak (``hs``, ``s``,
``op`` with ``create``, ``op``) at ``/ws``, on the same stack and settings as ``mailslot serve``
(``mailslot.server.UVICORN_SETTINGS``): uvicorn with httptools and the websockets sans-I/O protocol,
no compression, uvloop, and a plain ASGI application. What it does per op is the least a server can
do: parse the JSON, give the op the document's next version, and send an ack to its author and the
op to the document's other subscribers, each encoded once. No transformation (an op is relayed as it
came, whatever version it was made against), no store, no presence, no limits, no checks: so no
guarantees beyond the ones the load needs, and nothing for production. Its CPU per message is what
any server on this stack pays before doing any work of its own, which is what the benchmark compares
mailslot's with.

Sends are awaited in order within one task; uvicorn's ``send`` returns at once while the socket
takes data, so each client receives its frames in version order. The other side of that: a client
that stops reading holds up every author on its documents (their sends wait for its socket), so
the benchmark's stalled-reader cell says nothing about the relay.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from mailslot.server import UVICORN_SETTINGS

Send = Callable[[dict[str, Any]], Awaitable[None]]

# document id -> [next version, data, the send functions of its subscribers]
DOCS: dict[str, list[Any]] = {}
SOURCES = itertools.count(1)


def _frame(text: str) -> dict[str, Any]:
    return {"type": "websocket.send", "text": text}


async def _handle(message: dict[str, Any], me: dict[str, Any], send: Send) -> None:
    action = message.get("a")
    if action == "hs":
        me["src"] = f"r{next(SOURCES)}"
        hs = {"a": "hs", "id": me["src"], "protocol": 1, "protocolMinor": 2}
        await send(_frame(json.dumps(hs)))
    elif action == "s":
        doc = DOCS.get(message["d"])
        if doc is None:
            reply = {"a": "s", "c": message["c"], "d": message["d"], "data": None}
        else:
            doc[2].append(send)
            data = {"v": doc[0], "data": doc[1], "type": doc[3]}
            reply = {"a": "s", "c": message["c"], "d": message["d"], "data": data}
        await send(_frame(json.dumps(reply)))
    elif action == "op":
        c, d = message["c"], message["d"]
        create = message.get("create")
        if create is not None:
            doc = DOCS.setdefault(d, [1, create.get("data"), [], create.get("type")])
            version = 0
        else:
            doc = DOCS[d]
            version = doc[0]
            doc[0] += 1
        head = {"a": "op", "c": c, "d": d, "v": version, "src": me["src"], "seq": message["seq"]}
        await send(_frame(json.dumps(head)))
        if create is None:
            relayed = _frame(json.dumps({**head, "op": message["op"]}))
            for other in doc[2]:
                if other is not send:
                    await other(relayed)


async def app(
    scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Send
) -> None:
    """The ASGI application: one WebSocket endpoint."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    me: dict[str, Any] = {"src": None}
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            await _handle(json.loads(event["text"]), me, send)
    finally:
        for doc in DOCS.values():
            if send in doc[2]:
                doc[2].remove(send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",  # as `mailslot serve` runs its loop
        ws="websockets-sansio",
        **UVICORN_SETTINGS,
    )


if __name__ == "__main__":
    main()
