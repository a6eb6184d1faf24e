"""Helpers for the integration tests that run Node.js (ShareDB, the conformance suite, the load
generator): in CI a missing ``node`` or ``js/node_modules`` fails the test, elsewhere it skips it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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
