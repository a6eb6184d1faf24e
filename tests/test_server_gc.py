"""The serving process's garbage collector settings (``mailslot.server.tune_gc``)."""

from __future__ import annotations

import gc
import weakref

from mailslot.server import GC_THRESHOLDS, tune_gc


class _Node:
    other: _Node | None = None


def test_a_serving_process_collects_in_larger_batches_and_freezes_startup() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what existed at startup is out of every collection
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle made after startup is still collected
        ref = weakref.ref(a)
        del a, b
        gc.collect()
        assert ref() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
