"""Three ``mailslot serve --broker`` processes, stock ShareDB clients on different nodes.

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

    async def start_node(self, node_id: str) -> NodeProcess:
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
            "warning",
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
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
        ids = sorted(n.node_id for n in nodes)
        async with asyncio.timeout(30 * SCALE):
            while True:
                owned: set[int] = set()
                ok = True
                for node in nodes:
                    cluster = (await self.health(node))["cluster"]
                    ok = ok and sorted(cluster["live"]) == ids and cluster["connected"]
                    owned |= set(cluster["owned"])
                if ok and owned == set(range(SHARDS)):
                    return
                await asyncio.sleep(0.1)

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
