"""WebSocket frames, built once.

A server's frames are not masked (RFC 6455, 5.1), so the bytes of one text message are the same
for every client: a document's broadcast is framed once and the same ``bytes`` object is written
to every subscriber's socket.

Pure: standard library only.
"""

from __future__ import annotations

__all__ = ["FrameCache", "text_frame"]


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class FrameCache:
    """Frames of recently sent texts, so that a text sent to many clients is framed once.

    A committed op reaches every editor that missed it (with that editor's ack) as the same
    ``str``; its frame is looked up by that text (whose hash the ``str`` keeps). Bounded: texts
    longer than ``max_text`` are framed each time, and the cache empties when it holds
    ``max_entries`` frames (what is sent now is what is sent again soon).
    """

    __slots__ = ("_frames", "hits", "max_entries", "max_text", "misses")

    def __init__(self, *, max_entries: int = 1024, max_text: int = 4096) -> None:
        if max_entries < 1 or max_text < 0:
            raise ValueError("max_entries must be at least 1 and max_text not negative")
        self.max_entries = max_entries
        self.max_text = max_text
        self._frames: dict[str, bytes] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._frames)

    def framed(self, text: str) -> bytes:
        """``text_frame(text.encode())``, from the cache when ``text`` was framed recently."""
        wire = self._frames.get(text)
        if wire is not None:
            self.hits += 1
            return wire
        self.misses += 1
        wire = text_frame(text.encode())
        if len(text) <= self.max_text:
            if len(self._frames) >= self.max_entries:
                self._frames.clear()
            self._frames[text] = wire
        return wire
