"""Running test suites against the pure-Python twin of a C extension, in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]


def assert_pure_twin_passes(switch: str, flag: str, suites: list[str]) -> None:
    """Run ``suites`` with the environment variable ``switch`` set, which must turn ``flag``
    (``module:ATTRIBUTE``, true when the C core runs) false; every test must pass."""
    env = dict(os.environ, **{switch: "1"})
    module, attr = flag.split(":")
    check = [sys.executable, "-c", f"import {module} as m; print(m.{attr})"]
    assert subprocess.run(check, env=env, capture_output=True, text=True).stdout.strip() == "False"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def require_c_core(accelerated: bool, extension: str, switch: str) -> None:
    """Skip unless the C core runs (``accelerated``); in CI, fail instead: it must be built,
    unless the environment variable ``switch`` asks for the pure-Python twin."""
    if not accelerated:
        if os.environ.get(switch, "") not in ("", "0"):
            pytest.skip(f"{switch} is set: the pure-Python twin runs by request")
        if IN_CI:
            pytest.fail(f"CI=true: {extension} must be built (make test builds it)")
        pytest.skip(f"{extension} is not built here: the pure-Python twin runs")
