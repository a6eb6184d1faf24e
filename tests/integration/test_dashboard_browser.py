"""The live dashboard in headless Chromium, against a real server with traffic flowing.

The page polls ``/dashboard/data`` every second; the test waits on page conditions (updates
counted in ``body[data-updates]``, cards and numbers appearing), never on sleeps.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from mailslot.server import NodeConfig, RunningServer, start_server

pytestmark = pytest.mark.integration

WAIT_MS = 15_000 * float(os.environ.get("MAILSLOT_TEST_TIMEOUT_FACTOR", "1"))
SCREENSHOT = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard.png"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(
        NodeConfig(port=0, db=f"sqlite:///{tmp_path}/dash.db", secret="dashboard-tests")
    )
    try:
        yield running
    finally:
        await running.stop()


async def edit(server: RunningServer, doc: str, count: int) -> None:
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps({"a": "hs", "id": None, "protocol": 1, "protocolMinor": 2}))
        await ws.recv()
        await ws.send(json.dumps({"a": "op", "c": "docs", "d": doc, "seq": 1,
                                  "create": {"type": "text-unicode", "data": ""}}))  # fmt: skip
        await ws.recv()
        for v in range(1, count + 1):
            await ws.send(json.dumps({"a": "op", "c": "docs", "d": doc, "v": v, "seq": v + 1,
                                      "op": [str(v % 10)]}))  # fmt: skip
            await ws.recv()


async def test_the_dashboard_shows_live_numbers(browser: Any, server: RunningServer) -> None:
    page = await browser.new_page(viewport={"width": 1300, "height": 900})
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/dashboard")
    await page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1")
    await edit(server, "dash", 30)
    # the document actor's card appears, with numbers that moved
    card = page.locator('.card[data-type="DocumentActor"]')
    await card.wait_for()
    first = await page.evaluate("Number(document.body.dataset.updates)")
    await page.wait_for_function(f"Number(document.body.dataset.updates) > {first + 1}")
    status = await page.locator("#status-text").inner_text()
    assert "live" in status.lower()
    text = await card.inner_text()
    assert "DocumentActor" in text
    totals = await page.locator("#totals").inner_text()
    assert any(ch.isdigit() for ch in totals)
    assert errors == []
    await page.screenshot(path=str(SCREENSHOT))  # a test artifact (artifacts/ is not committed)
