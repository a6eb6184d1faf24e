"""Collaborative editing: the text OT type, the client protocol and the actors built on them."""

from __future__ import annotations

__all__: list[str] = []
