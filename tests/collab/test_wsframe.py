from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from mailslot.collab.wsframe import FrameCache, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_frames_parse_back_with_the_websockets_library(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:  # pragma: no cover - the whole frame was fed
        raise AssertionError("the frame was incomplete")
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)


def test_the_frame_cache_frames_a_text_once_and_stays_bounded() -> None:
    cache = FrameCache(max_entries=2, max_text=10)
    first = cache.framed("é" * 3)
    assert first == text_frame(("é" * 3).encode())
    assert cache.framed("é" * 3) is first  # framed once, the same bytes for every client
    assert (cache.hits, cache.misses) == (1, 1)
    long = "x" * 11  # past max_text: framed each time, never held
    assert cache.framed(long) == text_frame(long.encode())
    assert len(cache) == 1
    cache.framed("a")
    cache.framed("b")  # the third entry empties the cache first
    assert len(cache) == 1
    assert cache.framed("b") == text_frame(b"b")
    with pytest.raises(ValueError, match="max_entries"):
        FrameCache(max_entries=0)
