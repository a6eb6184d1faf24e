"""Shared test helpers.

Integration tests use real services on loopback. In CI (``CI=true``) a service that cannot be
reached fails the test; on a developer machine without the service the test is skipped with the
reason.
"""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail (in CI) or skip (elsewhere) unless ``host:port`` accepts connections."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: integration services must be running)")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture
def postgres_url() -> str:
    """A PostgreSQL URL for the ``test`` database (``MAILSLOT_TEST_PG`` overrides it)."""
    url = os.environ.get("MAILSLOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return url


@pytest.fixture
def amqp_url() -> str:
    """A RabbitMQ URL (``MAILSLOT_TEST_AMQP`` overrides it)."""
    url = os.environ.get("MAILSLOT_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return url
