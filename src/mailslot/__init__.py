"""mailslot: message passing for Python.

A lock-free actor runtime (:mod:`mailslot.runtime`), a cluster layer over RabbitMQ, and a real-time
collaborative editing service built on them. See README.md for the tour.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
