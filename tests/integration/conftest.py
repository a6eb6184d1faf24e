"""Helpers for the integration tests that run Node.js (ShareDB, the conformance suite, the load
generator) or a browser: in CI a missing ``node``, ``js/node_modules`` or Chromium fails the test,
elsewhere it skips it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def node() -> str:
    """The ``node`` executable, with the npm packages of ``js/`` installed."""
    path = shutil.which("node")
    problem = None
    if path is None:
        problem = "node is not installed"
    elif not (ROOT / "js" / "node_modules" / "sharedb").is_dir():
        problem = "js/node_modules is missing (run `make js/node_modules`)"
    if problem is not None:
        if IN_CI:
            pytest.fail(f"{problem} (CI=true: Node.js tests must run)")
        pytest.skip(problem)
    assert path is not None
    return path


CHROMIUM = os.environ.get("MAILSLOT_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as p:
        try:
            launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Exception as exc:
            _unavailable(f"Chromium did not start: {exc}")
        try:
            yield launched
        finally:
            await launched.close()
