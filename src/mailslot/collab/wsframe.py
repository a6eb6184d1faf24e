"""WebSocket frames, built once.

A server's frames are not masked (RFC 6455, 5.1), so the bytes of one text message are the same
for every client: a document's broadcast is framed once and the same ``bytes`` object is written
to every subscriber's socket.

Pure: standard library only.
"""

from __future__ import annotations

__all__ = ["text_frame"]


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload
