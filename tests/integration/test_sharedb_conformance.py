"""The ShareDB protocol conformance suite against every server that claims the protocol.

``tests/node/conformance.js`` drives the real npm ``sharedb`` 7 client (and raw sockets where a
client could not produce the frame) against a server URL and prints one JSON line per scenario.
Against stock ShareDB 7 (``bench/sharedb_server.js``) it validates the suite itself; against
mailslot's server it checks that the stock client works with mailslot.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailslot.bench import collab
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

SUITE = ROOT / "tests" / "node" / "conformance.js"
SCENARIOS = {
    "create_fetch",
    "concurrent_edits",
    "offline_reconnect",
    "bulk_resubscribe",
    "snapshots",
    "errors_rollback",
    "presence",
}

# Target server -> extra arguments for the suite (e.g. scenarios it does not support yet).
# The fixture starts each with mailslot.bench.collab.start_target(name).
TARGETS: dict[str, list[str]] = {
    "sharedb": [],
    "mailslot": [],
}


@pytest.fixture(params=sorted(TARGETS))
def server(request: pytest.FixtureRequest, node: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL of a running target server, its name)."""
    name: str = request.param
    with collab.start_target(name, workdir=tmp_path) as running:
        yield running.url, name


def _run_suite(node: str, url: str, *extra: str) -> tuple[int, list[dict[str, object]], str]:
    proc = subprocess.run(
        [node, str(SUITE), "--url", url, *extra],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, results, proc.stderr


def test_every_scenario_passes(server: tuple[str, str], node: str) -> None:
    url, name = server
    code, results, stderr = _run_suite(node, url, *TARGETS[name])
    failed = {r["name"]: r["error"] for r in results if not r["ok"]}
    assert failed == {}, f"{name}: failed scenarios: {json.dumps(failed, indent=1)}"
    assert {r["name"] for r in results} == SCENARIOS, stderr
    assert code == 0, stderr


def test_suite_reports_a_failing_server(node: str) -> None:
    # Nothing listens on this port: every scenario that runs must fail, by name, with exit 1.
    port = collab.free_port()
    code, results, _ = _run_suite(
        node,
        f"ws://127.0.0.1:{port}/ws",
        "--only",
        "create_fetch,snapshots",
        "--timeout-scale",
        "0.1",
    )
    ran = {r["name"]: r for r in results if not r.get("skipped")}
    assert set(ran) == {"create_fetch", "snapshots"}
    assert all(not r["ok"] and r["error"] for r in ran.values())
    assert code == 1
