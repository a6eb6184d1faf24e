"""Users, tokens, sharing, presence and notifications through a real server (sockets, REST)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from mailslot.cli import main
from mailslot.server import NodeConfig, RunningServer, start_server
from tests.wsclient import connect

WAIT = 10.0


async def serve(tmp_path: Path, **options: Any) -> RunningServer:
    return await start_server(
        NodeConfig(port=0, db=f"sqlite:///{tmp_path}/acc.db", secret="test-secret", **options)
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await serve(tmp_path)
    try:
        yield running
    finally:
        await running.stop()


async def login(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    reply = await http.post("/api/dev-login", json={"name": name})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    assert (body["user"], body["dev"]) == (name, True)
    return {"authorization": f"Bearer {body['token']}", "token": body["token"]}


async def test_owners_share_and_access_follows_without_reconnecting(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        ann, bob = await login(http, "ann"), await login(http, "bob")
        auth_ann = {"authorization": ann["authorization"]}
        auth_bob = {"authorization": bob["authorization"]}
        created = await http.post("/api/docs", json={"id": "plan", "text": "hi"}, headers=auth_ann)
        assert created.status_code == 201
        mine = (await http.get("/api/me/docs", headers=auth_ann)).json()
        assert mine == {
            "documents": [{"id": "plan", "role": "owner", "since": mine["documents"][0]["since"]}]
        }
        assert (await http.get("/api/docs/plan", headers=auth_bob)).status_code == 403

        b = await connect(server.ws_url, token=bob["token"])
        await b.send({"a": "s", "c": "docs", "d": "plan"})
        refused = await b.until(a="s")
        assert refused["error"]["code"] == "ERR_MAILSLOT_ACCESS_DENIED"

        # bob may not share ann's document; ann shares it read-only
        denied = await http.post("/api/docs/plan/members", json={"user": "bob"}, headers=auth_bob)
        assert denied.status_code in (403, 404)
        shared = await http.post(
            "/api/docs/plan/members", json={"user": "bob", "role": "read"}, headers=auth_ann
        )
        assert shared.json() == {"user": "bob", "role": "read"}
        assert (await b.until(a="x-access")) == {
            "a": "x-access",
            "c": "docs",
            "d": "plan",
            "role": "read",
        }
        note = await b.until(a="x-notify")
        assert note["notification"]["kind"] == "share"
        await b.send({"a": "s", "c": "docs", "d": "plan"})
        assert (await b.until(a="s"))["data"]["data"] == "hi"
        rejected = await b.submit("plan", 1, op=[2, "!"])
        assert rejected["error"]["code"] == "ERR_OP_SUBMIT_REJECTED"

        await http.post(
            "/api/docs/plan/members", json={"user": "bob", "role": "write"}, headers=auth_ann
        )
        await b.until(a="x-access", role="write")
        accepted = await b.submit("plan", 1, op=[2, "!"])
        assert "error" not in accepted
        members = (await http.get("/api/docs/plan/members", headers=auth_bob)).json()
        assert members == {
            "members": [{"user": "ann", "role": "owner"}, {"user": "bob", "role": "write"}]
        }

        gone = await http.delete("/api/docs/plan/members/bob", headers=auth_ann)
        assert gone.status_code == 200
        await b.until(a="x-access", role=None)
        again = await b.submit("plan", 2, op=[3, "?"])
        assert again["error"]["code"] == "ERR_OP_SUBMIT_REJECTED"
        await b.ws.close()


async def test_mentions_reach_the_inbox_and_open_sessions(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        ann, bob = await login(http, "ann"), await login(http, "bob")
        auth_ann = {"authorization": ann["authorization"]}
        auth_bob = {"authorization": bob["authorization"]}
        await http.post("/api/docs", json={"id": "notes", "text": ""}, headers=auth_ann)
        await http.post("/api/docs/notes/members", json={"user": "bob"}, headers=auth_ann)
        a = await connect(server.ws_url, token=ann["token"])
        b = await connect(server.ws_url, token=bob["token"])
        # the share came before bob connected: it is in the inbox, not pushed
        v = 1
        for ch in "hey @bob ":  # typed one character at a time
            reply = await a.submit("notes", v, op=[v - 1, ch] if v > 1 else [ch])
            assert "error" not in reply, reply
            v += 1
        note = await b.until(a="x-notify")
        n = note["notification"]
        assert (n["kind"], n["author"], n["d"]) == ("mention", "ann", "notes")
        assert "@bob" in n["excerpt"]
        inbox = (await http.get("/api/notifications", headers=auth_bob)).json()
        assert [x["kind"] for x in inbox["notifications"]] == ["mention", "share"]
        assert inbox["unread"] == 2
        marked = await http.post("/api/notifications/read", json={"all": True}, headers=auth_bob)
        assert marked.json() == {"marked": 2, "unread": 0}
        assert (await b.until(a="x-unread")) == {"a": "x-unread", "unread": 0}
        bad = await http.post("/api/notifications/read", json={}, headers=auth_bob)
        assert bad.status_code == 400
        await a.ws.close()
        await b.ws.close()


async def test_presence_between_two_sockets(server: RunningServer) -> None:
    a, b = await connect(server.ws_url), await connect(server.ws_url)
    await a.submit("p1", None, create={"type": "text-unicode", "data": "hello"})
    for c in (a, b):
        await c.send({"a": "s", "c": "docs", "d": "p1"})
        await c.until(a="s")
    await a.send({"a": "ps", "ch": "docs.p1", "seq": 1})
    assert await a.until(a="ps") == {"a": "ps", "ch": "docs.p1", "seq": 1}
    await b.send({"a": "ps", "ch": "docs.p1", "seq": 1})
    await b.until(a="ps")
    assert await a.until(a="pr") == {"a": "pr", "ch": "docs.p1"}
    update = {"a": "p", "ch": "docs.p1", "id": "x1", "p": {"index": 2, "length": 1}, "pv": 0}
    await a.send({**update, "c": "docs", "d": "p1", "v": 1, "t": "text-unicode"})
    seen = await b.until(a="p")
    assert (seen["id"], seen["p"], seen["v"]) == ("x1", {"index": 2, "length": 1}, 1)
    assert (await a.until(a="p"))["src"] == seen["src"]  # the sender's ack
    await a.ws.close()
    gone = await b.until(a="p")
    assert (gone["id"], gone["p"]) == ("x1", None)
    await b.ws.close()


async def test_bad_tokens_and_no_dev_login(tmp_path: Path) -> None:
    # no configured secret: the server and the command line share secret.key beside the db
    db = f"sqlite:///{tmp_path}/acc.db"
    running = await start_server(NodeConfig(port=0, db=db, dev_login=False))
    try:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(running.ws_url)
        assert refused.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(running.ws_url + "?token=forged.token")
        async with httpx.AsyncClient(base_url=running.url) as http:
            reply = await http.post("/api/dev-login", json={"name": "ann"})
            assert reply.status_code == 403
            assert (await http.get("/api/config")).json()["dev_login"] is False
            assert (await http.get("/api/me")).status_code == 401
            forged = await http.get("/api/docs/x", headers={"authorization": "Bearer x.y"})
            assert forged.status_code == 403
            assert (await http.get("/api/docs")).status_code == 401
            assert (await http.post("/api/docs", json={"id": "a"})).status_code == 401

            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = await asyncio.to_thread(main, ["user", "add", "dora", "--db", db])
            assert code == 0
            token = out.getvalue().strip().splitlines()[-1]
            me = await http.get("/api/me", headers={"authorization": f"Bearer {token}"})
            assert me.json()["user"] == "dora"
        client = await connect(running.ws_url, token=token)
        await client.ws.close()
        assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    finally:
        await running.stop()
    assert await asyncio.to_thread(main, ["user", "add", "no spaces", "--db", db]) == 2


async def test_bad_requests_name_what_was_wrong(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        bad = await http.post("/api/dev-login", json={"name": "no spaces"})
        assert bad.status_code == 400
        assert "invalid user name" in bad.json()["error"]
        assert (await http.post("/api/dev-login", content=b"{")).status_code == 400
        ann = await login(http, "ann")
        hook = await http.put(
            "/api/me/webhook",
            json={"url": "ftp://x"},
            headers={"authorization": ann["authorization"]},
        )
        assert hook.status_code == 400
        ok = await http.put(
            "/api/me/webhook",
            json={"url": "http://127.0.0.1:9/h"},
            headers={"authorization": ann["authorization"]},
        )
        assert ok.json()["webhook"] == "http://127.0.0.1:9/h"
        dead = await http.get(
            "/api/webhooks/dead-letters", headers={"authorization": ann["authorization"]}
        )
        assert dead.json() == {"dead_letters": []}
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/web/nope.js")).status_code == 404


async def test_webhooks_are_posted_with_an_idempotency_key(tmp_path: Path) -> None:
    """The default poster (httpx) against a small HTTP endpoint on loopback."""
    received: asyncio.Queue[tuple[dict[str, str], dict[str, Any]]] = asyncio.Queue()

    async def endpoint(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        headers = {k.lower(): v for k, v in headers.items()}
        body = await reader.readexactly(int(headers["content-length"]))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        await received.put((headers, json.loads(body)))

    hook = await asyncio.start_server(endpoint, "127.0.0.1", 0)
    port = hook.sockets[0].getsockname()[1]
    running = await serve(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=running.url) as http:
            ann, bob = await login(http, "ann"), await login(http, "bob")
            url = f"http://127.0.0.1:{port}/hook"
            auth_bob = {"authorization": bob["authorization"]}
            assert (await http.put("/api/me/webhook", json={"url": url}, headers=auth_bob)).json()[
                "webhook"
            ] == url
            auth_ann = {"authorization": ann["authorization"]}
            await http.post("/api/docs", json={"id": "h", "text": ""}, headers=auth_ann)
            await http.post("/api/docs/h/members", json={"user": "bob"}, headers=auth_ann)
            headers, body = await asyncio.wait_for(received.get(), WAIT)
            assert body["user"] == "bob"
            assert body["notification"]["kind"] == "share"
            assert headers["idempotency-key"] == body["notification"]["id"]
            assert headers["content-type"] == "application/json"
    finally:
        await running.stop()
        hook.close()
        await hook.wait_closed()
