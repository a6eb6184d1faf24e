"""Node scripts against mailslot: the real ``sharedb`` client's presence, and the web client's OT.

Each runs a script from ``tests/node`` with the npm packages of ``js/`` (``make js/node_modules``).
Without ``node`` or those packages the tests are skipped, in CI they fail.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailslot.server import NodeConfig, RunningServer, start_server
from tests.conftest import IN_CI

HERE = Path(__file__).resolve().parent
MODULES = HERE.parents[1] / "js" / "node_modules"


def _node() -> str:
    node = shutil.which("node")
    missing = [p for p in ("sharedb", "ws", "ot-text-unicode") if not (MODULES / p).is_dir()]
    if node is None or missing:
        reason = "node is not installed" if node is None else f"js/node_modules lacks {missing}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true)")
        pytest.skip(f"{reason}: run `make js/node_modules`")
    return node


async def _run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=HERE,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(NodeConfig(port=0, db=f"sqlite:///{tmp_path}/node.db"))
    try:
        yield running
    finally:
        await running.stop()


async def test_sharedb_presence_against_mailslot(server: RunningServer) -> None:
    code, out = await _run(_node(), str(HERE / "presence.js"), server.ws_url)
    assert code == 0, out
    checks = [line for line in out.splitlines() if line.startswith("ok - ")]
    assert len(checks) == 6, out
    assert out.strip().endswith("ok")


async def test_the_web_client_ot_agrees_with_ot_text_unicode() -> None:
    code, out = await _run(_node(), str(HERE / "web_client_ot.mjs"), "11")
    assert code == 0, out
    assert "5000 cases, 0 mismatches" in out
