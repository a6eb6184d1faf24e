"""Several ``mailslot serve --broker`` processes, stock ShareDB clients on different nodes, and
one edit traced across two of them (each node's spans read from its console exporter).

Real RabbitMQ and PostgreSQL. Each test gets its own broker name prefix and database schema, and
deletes them at the end. The clients (``js/cluster_load.js``) insert unique tokens, so "no
acknowledged op lost" is checked on the final text; "one total order per document" is the op log
having every version exactly once; convergence is every client ending with the server's text.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailslot.cluster.amqp import AmqpTransport
from mailslot.cluster.transport import Names, QueueSettings
from tests import wsclient
from tests.changes import Changes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOAD = ROOT / "js" / "cluster_load.js"
SCALE = float(os.environ.get("MAILSLOT_TEST_TIMEOUT_SCALE", "1"))
SHARDS = 16


class NodeProcess:
    def __init__(self, proc: asyncio.subprocess.Process, url: str, node_id: str) -> None:
        self.proc = proc
        self.url = url
        self.node_id = node_id
        self.output: list[str] = []  # what it prints after "serving on", read as it comes
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.output.append(line.decode())

    @property
    def ws(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws"


class ClusterRun:
    def __init__(self, tmp: Path, db: str, broker: str, prefix: str) -> None:
        self.tmp = tmp
        self.db = db
        self.broker = broker
        self.prefix = prefix
        self.nodes: list[NodeProcess] = []
        self.logs: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        # the nodes log each change of their cluster view (a node joined or left, the shards
        # they consume); waits on that view look again at each line any node logs
        self.logged = Changes()

    async def _log(self, proc: asyncio.subprocess.Process, log: Any) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            log.write(line)
            self.logged.poke()

    async def start_node(self, node_id: str, env: dict[str, str] | None = None) -> NodeProcess:
        log = open(self.tmp / f"{node_id}.log", "wb")  # noqa: SIM115, ASYNC230 - closed in close()
        self.logs.append(log)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mailslot.cli",
            "serve",
            "--port",
            "0",
            "--broker",
            self.broker,
            "--db",
            self.db,
            "--node-id",
            node_id,
            "--cluster-prefix",
            self.prefix,
            "--shards",
            str(SHARDS),
            "--log-format",
            "json",
            "--log-level",
            "info",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.readers.append(asyncio.create_task(self._log(proc, log)))
        assert proc.stdout is not None
        async with asyncio.timeout(30 * SCALE):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"{node_id} exited: see {self.tmp / (node_id + '.log')}")
                if "serving on" in line:
                    url = line.split("serving on", 1)[1].split()[0]
                    break
        node = NodeProcess(proc, url, node_id)
        self.nodes.append(node)
        return node

    async def health(self, node: NodeProcess) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            reply = await client.get(node.url + "/healthz", timeout=5)
            return dict(reply.json())

    async def formed(self, nodes: list[NodeProcess]) -> None:
        """Every node sees the others, and together they consume every shard."""
        ids = sorted(n.node_id for n in nodes)
        async with asyncio.timeout(30 * SCALE):
            while True:
                logged = self.logged.next()
                owned: set[int] = set()
                ok = True
                for node in nodes:
                    cluster = (await self.health(node))["cluster"]
                    ok = ok and sorted(cluster["live"]) == ids and cluster["connected"]
                    owned |= set(cluster["owned"])
                if ok and owned == set(range(SHARDS)):
                    return
                await logged

    async def load(self, **config: Any) -> asyncio.subprocess.Process:
        config.setdefault("urls", [n.ws for n in self.nodes])
        return await asyncio.create_subprocess_exec(
            "node", str(LOAD), json.dumps(config), stdout=asyncio.subprocess.PIPE, cwd=ROOT / "js"
        )

    async def under_way(self, proc: asyncio.subprocess.Process) -> None:
        """Wait for the load's progress line (``progress_after`` ops acknowledged)."""
        assert proc.stdout is not None
        async with asyncio.timeout(60 * SCALE):
            line = await proc.stdout.readline()
        assert json.loads(line).get("event") == "progress", line

    async def result(self, proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout * SCALE):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            raise AssertionError(f"the load did not finish: {out.decode()[-2000:]}") from None
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        assert result["ok"], result
        return result

    async def check(self, result: dict[str, Any], node: NodeProcess) -> None:
        """Every client converged to the stored document; nothing acknowledged is missing."""
        async with httpx.AsyncClient() as client:
            for doc, final in result["docs"].items():
                stored = (await client.get(f"{node.url}/api/docs/{doc}", timeout=10)).json()
                assert stored["data"] == final["data"], doc
                assert stored["v"] == final["v"], doc
                history = (
                    await client.get(
                        f"{node.url}/api/docs/{doc}/history", params={"limit": 1000}, timeout=10
                    )
                ).json()["ops"]
                assert sorted(op["v"] for op in history) == list(range(final["v"])), doc
        for item in result["acked"]:
            doc, token = item.split(":", 1)
            assert token in result["docs"][doc]["data"], f"acknowledged {token} lost in {doc}"

    async def close(self) -> None:
        for node in self.nodes:
            if node.proc.returncode is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                async with asyncio.timeout(15):
                    await node.proc.wait()
            except TimeoutError:
                node.proc.kill()
                await node.proc.wait()
            await node.reader
        for reader in self.readers:
            await reader
        for log in self.logs:
            log.close()


@pytest.fixture
async def run(tmp_path: Path, postgres_url: str, amqp_url: str) -> AsyncIterator[ClusterRun]:
    if shutil.which("node") is None or not (ROOT / "js" / "node_modules" / "sharedb").exists():
        pytest.skip("needs node and `make js/node_modules`")
    prefix = f"msc{secrets.token_hex(4)}"
    schema = f"mailslot_test_{secrets.token_hex(6)}"
    db = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    r = ClusterRun(tmp_path, db, amqp_url, prefix)
    try:
        yield r
    finally:
        await r.close()
        from mailslot.store import parse_url
        from mailslot.store.postgres import drop_schema

        await drop_schema(parse_url(db).dsn, schema)
        await AmqpTransport(
            amqp_url, names=Names(prefix), settings=QueueSettings(shards=SHARDS)
        ).delete_topology()


DOCS = [f"d{i}" for i in range(4)]


async def test_clients_on_three_nodes_converge_with_one_order_per_document(
    run: ClusterRun,
) -> None:
    for i in range(3):
        await run.start_node(f"n{i}")
    await run.formed(run.nodes)
    load = await run.load(clients=6, docs=DOCS, ops=40, pace_ms=2, timeout_ms=60000)
    result = await run.result(load, 90)
    assert len(result["acked"]) == 6 * 40
    await run.check(result, run.nodes[1])


async def test_a_killed_node_fails_over_without_losing_acknowledged_ops(run: ClusterRun) -> None:
    for i in range(3):
        await run.start_node(f"n{i}")
    await run.formed(run.nodes)
    load = await run.load(
        clients=6, docs=DOCS, ops=80, pace_ms=10, timeout_ms=90000, progress_after=60
    )
    await run.under_way(load)  # now kill a node in the middle of it
    victim = run.nodes[1]
    victim.proc.send_signal(signal.SIGKILL)
    await victim.proc.wait()
    survivors = [run.nodes[0], run.nodes[2]]
    await run.formed(survivors)  # its shards moved to the others
    result = await run.result(load, 120)
    assert result["reconnects"] >= 2  # its clients (2 of 6) came back through another node
    await run.check(result, run.nodes[0])


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


async def test_a_broker_restart_loses_no_acknowledged_op(run: ClusterRun) -> None:
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        pytest.skip("needs rabbitmqctl as root")
    for i in range(2):
        await run.start_node(f"n{i}")
    await run.formed(run.nodes)
    load = await run.load(
        clients=4, docs=DOCS, ops=60, pace_ms=10, timeout_ms=120000, progress_after=40
    )
    await run.under_way(load)  # restart the broker in the middle of the load
    try:
        await asyncio.to_thread(_rabbitmqctl, "stop_app")
    finally:
        await asyncio.to_thread(_rabbitmqctl, "start_app")
    await asyncio.to_thread(_rabbitmqctl, "await_startup")
    result = await run.result(load, 150)
    await run.formed(run.nodes)
    await run.check(result, run.nodes[0])


# ------------------------------------------------------------------ one edit, one trace, 2 nodes

TRACE_ENV = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50"}


def printed_spans(node: NodeProcess) -> list[dict[str, Any]]:
    """The spans a node's console exporter printed: JSON objects one after another."""
    text = "".join(node.output)
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    at = 0
    while (start := text.find("{", at)) != -1:
        try:
            obj, at = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            at = start + 1
            continue
        if isinstance(obj, dict) and "context" in obj and "parent_id" in obj:
            spans.append(obj)
    return spans


async def test_one_edit_is_one_trace_across_two_node_processes(run: ClusterRun) -> None:
    from mailslot.cluster.routing import assignment, shard_for

    # The first node consumes every shard until it sees the second; it stays the active consumer
    # of the shards it is primary for. A client on the second node editing a document of one of
    # those shards therefore crosses from one process to the other and back.
    back = await run.start_node("t0", env={**TRACE_ENV, "OTEL_SERVICE_NAME": "t0"})
    await run.formed([back])  # it consumes every shard before the second node subscribes
    front = await run.start_node("t1", env={**TRACE_ENV, "OTEL_SERVICE_NAME": "t1"})
    await run.formed(run.nodes)
    table = assignment(["t0", "t1"], SHARDS)
    doc = next(
        d
        for d in (f"x{i}" for i in range(1000))
        if table[shard_for(f"docs/docs/{d}", SHARDS)][0] == "t0"
    )

    ws = await wsclient.connect(front.ws, wait=30)
    await ws.send(json.dumps({"a": "op", "c": "docs", "d": doc, "seq": 1,
                              "create": {"type": "text-unicode", "data": "hi"}}))  # fmt: skip
    await ws.until(a="op", seq=1)
    await ws.send(json.dumps({"a": "op", "c": "docs", "d": doc, "v": 1, "seq": 2, "op": ["!"]}))
    await ws.until(a="op", seq=2)
    await ws.close()
    await run.close()  # SIGTERM: each node flushes its spans as it stops

    spans = [(s, "t1") for s in printed_spans(front)] + [(s, "t0") for s in printed_spans(back)]
    by_id = {s["context"]["span_id"]: (s, node) for s, node in spans}

    def label(span: dict[str, Any]) -> str:
        attrs = span.get("attributes") or {}
        message = attrs.get("mailslot.message.type")
        return f"{attrs.get('mailslot.actor.type')}:{message}" if message else str(span["name"])

    def chain(span: dict[str, Any], node: str) -> list[tuple[str, str]]:
        out = []
        item: tuple[dict[str, Any], str] | None = (span, node)
        while item is not None:
            out.append((item[1], label(item[0])))
            item = by_id.get(item[0]["parent_id"]) if item[0]["parent_id"] else None
        return list(reversed(out))

    acks = [(s, n) for s, n in spans if label(s) == "SessionActor:OpAcked"]
    assert acks, "the front node traced no acknowledgement"
    ack, node = acks[-1]
    assert chain(ack, node) == [
        ("t1", "SessionActor:ClientFrame"),
        ("t0", "DocumentManager:SubmitOp"),
        ("t0", "DocumentActor:SubmitOp"),
        ("t0", "store commit"),
        ("t0", "DocumentActor:_Committed"),
        ("t1", "SessionActor:OpAcked"),
    ]


# ------------------------------------------------------ presence and notifications across nodes


async def test_presence_and_live_notifications_cross_nodes(run: ClusterRun) -> None:
    """Ann on one node, Bob on the other: Bob sees Ann's cursor and gets her @mention live."""
    from mailslot.cluster.routing import assignment, shard_for

    env = {"MAILSLOT_SECRET": "one secret for the whole cluster"}
    first = await run.start_node("q0", env=env)
    await run.formed([first])  # it consumes every shard before the second node subscribes
    second = await run.start_node("q1", env=env)
    await run.formed(run.nodes)
    table = assignment(["q0", "q1"], SHARDS)
    # a document the first node keeps: Ann's mention is stored there, Bob is on the second
    doc = next(
        d
        for d in (f"talk{i}" for i in range(1000))
        if table[shard_for(f"docs/docs/{d}", SHARDS)][0] == "q0"
    )
    ch = f"docs.{doc}"

    async def login(node: NodeProcess, name: str) -> str:
        async with httpx.AsyncClient(base_url=node.url) as http:
            reply = await http.post("/api/dev-login", json={"name": name}, timeout=10)
            assert reply.status_code == 200, reply.text
            return str(reply.json()["token"])

    async def connect(node: NodeProcess, token: str | None) -> wsclient.Client:
        return await wsclient.connect(node.ws, token=token, wait=30)

    ann_token, bob_token = await login(first, "ann"), await login(second, "bob")
    ann = await connect(first, ann_token)
    async with httpx.AsyncClient(base_url=first.url) as http:
        auth = {"authorization": f"Bearer {ann_token}"}
        created = await http.post("/api/docs", json={"id": doc, "text": "hi"}, headers=auth)
        assert created.status_code == 201, created.text
        shared = await http.post(
            f"/api/docs/{doc}/members",
            json={"user": "bob", "role": "write"},
            headers=auth,
            timeout=10,
        )
        assert shared.status_code == 200, shared.text

    bob = await connect(second, bob_token)
    # Bob's session is known to his node's notifications (they answer him) ...
    async with httpx.AsyncClient(base_url=second.url) as http:
        read = await http.post(
            "/api/notifications/read",
            json={"all": True},
            headers={"authorization": f"Bearer {bob_token}"},
            timeout=10,
        )
        assert read.status_code == 200, read.text
    await bob.until(a="x-unread")
    # ... and a request through the broker after his presence subscription proves that his
    # node's bindings (his notifications, the channel) are in place
    await bob.send(json.dumps({"a": "ps", "ch": ch, "seq": 1}))
    await bob.until(a="ps")
    await bob.send(json.dumps({"a": "s", "c": "docs", "d": doc}))
    assert (await bob.until(a="s"))["data"]["data"] == "hi"

    await ann.send(json.dumps({"a": "ps", "ch": ch, "seq": 1}))
    await ann.until(a="ps")
    await ann.send(json.dumps({"a": "s", "c": "docs", "d": doc}))
    await ann.until(a="s")

    await ann.send(json.dumps({"a": "p", "ch": ch, "id": "ann-1", "pv": 1, "c": "docs",
                               "d": doc, "v": 1, "t": "http://sharejs.org/types/text-unicode",
                               "p": {"index": 2, "length": 0}}))  # fmt: skip
    cursor = await bob.until(a="p", id="ann-1")
    assert cursor["p"] == {"index": 2, "length": 0}
    assert cursor["src"] != ""

    await ann.send(json.dumps({"a": "op", "c": "docs", "d": doc, "v": 1, "seq": 1,
                               "op": [2, " @bob"]}))  # fmt: skip
    assert "error" not in await ann.until(a="op", seq=1)
    note = await bob.until(a="x-notify")
    assert (note["notification"]["kind"], note["notification"]["author"]) == ("mention", "ann")

    await ann.close()  # Ann leaves: her cursor goes from Bob's page too
    gone = await bob.until(a="p", id="ann-1")
    assert gone["p"] is None
    await bob.close()
