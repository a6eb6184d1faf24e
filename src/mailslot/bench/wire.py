"""``mailslot bench wire``: encode + decode of a batch of small envelopes, next to json and pickle.

Every case carries the same 100 logical messages (id, timestamp, sender, target, trace context,
tag, schema version and a small encoded body) one batch at a time, and reports nanoseconds per
envelope for encoding, decoding and both, the bytes per envelope, and the ratio to
``encode_batch`` + ``decode_batch``. Each figure is the best of several timed runs of many
batches; the runs go round-robin over the cases, so that a noisy moment of a shared machine hits
them all alike, and the garbage collector is paused while timing (as ``timeit`` does).

The peers are the plain stdlib ways to ship the same data: ``json`` of dicts (bytes as base64
text, converted before timing, which favours json) and ``pickle`` of tuples or of the Envelope
structs themselves. Every case is checked for a faithful round trip before it is timed. ``pickle``
is no option for bytes from a broker (unpickling runs code); it is here as the speed to compare to.
"""

from __future__ import annotations

import argparse
import base64
import functools
import gc
import json
import pickle
import time
from collections.abc import Callable
from typing import Any

import msgspec

from mailslot.bench import Report
from mailslot.wire import (
    BatchBuilder,
    Envelope,
    IdSequence,
    MessageRegistry,
    decode_batch,
    encode_batch,
)

__all__ = ["add_arguments", "run"]

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


class _Op(msgspec.Struct, frozen=True, tag="doc.op", array_like=True):
    """A small typed message, shaped like a text op submitted to a document."""

    doc: str
    version: int
    seq: int
    op: list[int | str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this suite."""
    parser.add_argument("--size", type=int, default=100, help="envelopes per batch (100)")
    parser.add_argument("--rounds", type=int, default=None, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (best kept)")


def _messages(size: int) -> list[_Op]:
    return [_Op(f"doc-{i % 8}", 1000 + i, i, [i % 50, "hello"]) for i in range(size)]


def _envelopes(registry: MessageRegistry, msgs: list[_Op]) -> list[Envelope]:
    ids = IdSequence(b"\x5a" * 8)
    return [
        registry.envelope(
            m,
            id=ids.next_id(),
            timestamp_ns=1_733_300_000_000_000_000 + i,
            target=f"docs/{m.doc}",
            sender=f"/user/gateway/session-{i}",
            traceparent=f"00-{TRACE_ID}-{0xB7AD6B7169200000 + i:016x}-01",
        )
        for i, m in enumerate(msgs)
    ]


def _mean_ns(fn: Callable[[], object], rounds: int) -> float:
    """The mean time of one call over ``rounds`` calls, in nanoseconds."""
    start = time.perf_counter_ns()
    for _ in range(rounds):
        fn()
    return (time.perf_counter_ns() - start) / rounds


class _Case:
    def __init__(
        self,
        name: str,
        encode: Callable[[], bytes],
        decode: Callable[[bytes], object],
        check: Callable[[object], bool],
    ) -> None:
        self.name = name
        self.encode = encode
        self.decode = decode
        self.check = check


def _cases(envelopes: list[Envelope], registry: MessageRegistry, msgs: list[_Op]) -> list[_Case]:
    fields = Envelope.__struct_fields__
    as_tuples = [msgspec.structs.astuple(e) for e in envelopes]
    as_dicts = [
        {
            k: base64.b64encode(v).decode() if isinstance(v, bytes) else v
            for k, v in zip(fields, t, strict=True)
        }
        for t in as_tuples
    ]
    size = len(envelopes)

    def builder_encode() -> bytes:
        builder = BatchBuilder(max_count=size)
        for e in envelopes:
            ready = builder.add("shard.7", e)
        return ready[0].frame

    def typed_encode() -> bytes:
        builder = BatchBuilder(max_count=size)
        for i, m in enumerate(msgs):
            ready = builder.add(
                "shard.7",
                registry.envelope(
                    m,
                    id=envelopes[i].id,
                    timestamp_ns=envelopes[i].timestamp_ns,
                    target=envelopes[i].target,
                    sender=envelopes[i].sender,
                    traceparent=envelopes[i].traceparent,
                ),
            )
        return ready[0].frame

    def typed_decode(frame: bytes) -> list[Any]:
        return [registry.open(e) for e in decode_batch(frame)]

    def json_encode() -> bytes:
        return json.dumps(as_dicts, separators=(",", ":")).encode()

    return [
        _Case(
            "mailslot encode_batch/decode_batch",
            lambda: encode_batch(envelopes),
            decode_batch,
            lambda out: out == envelopes,
        ),
        _Case("mailslot BatchBuilder", builder_encode, decode_batch, lambda out: out == envelopes),
        _Case(
            "mailslot typed (registry + builder)",
            typed_encode,
            typed_decode,
            lambda out: out == msgs,
        ),
        _Case("json (dicts, base64 bytes)", json_encode, json.loads, lambda out: out == as_dicts),
        _Case(
            "pickle (tuples)",
            lambda: pickle.dumps(as_tuples, protocol=pickle.HIGHEST_PROTOCOL),
            pickle.loads,
            lambda out: out == as_tuples,
        ),
        _Case(
            "pickle (Envelope structs)",
            lambda: pickle.dumps(envelopes, protocol=pickle.HIGHEST_PROTOCOL),
            pickle.loads,
            lambda out: out == envelopes,
        ),
    ]


def run(args: argparse.Namespace) -> Report:
    """Run the suite and return its report."""
    size = max(1, int(args.size))
    rounds = args.rounds or (200 if args.quick else 1000)
    repeats = args.repeats or (5 if args.quick else 15)
    registry = MessageRegistry("bench")
    registry.register(_Op)
    msgs = _messages(size)
    envelopes = _envelopes(registry, msgs)
    report = Report(
        "wire",
        ["case", "encode ns/env", "decode ns/env", "total ns/env", "bytes/env", "x mailslot"],
    )
    cases = _cases(envelopes, registry, msgs)
    frames = []
    for case in cases:
        frame = case.encode()
        if not case.check(case.decode(frame)):
            raise AssertionError(f"{case.name}: the round trip changed the data")
        frames.append(frame)
    timers: list[tuple[Callable[[], object], Callable[[], object]]] = [
        (case.encode, functools.partial(case.decode, frame))
        for case, frame in zip(cases, frames, strict=True)
    ]
    best = [[float("inf"), float("inf")] for _ in cases]
    enabled = gc.isenabled()
    gc.disable()
    try:
        # Round-robin, so that a noisy moment hits every case alike; keep each case's best. Each
        # timed run follows a short untimed one, so that no case pays for the allocator state the
        # previous case left behind.
        warm = max(1, rounds // 10)
        for _ in range(repeats):
            for k, pair in enumerate(timers):
                for j, fn in enumerate(pair):
                    _mean_ns(fn, warm)
                    best[k][j] = min(best[k][j], _mean_ns(fn, rounds) / size)
    finally:
        if enabled:
            gc.enable()
    base_total = best[0][0] + best[0][1]
    for case, frame, (encode_ns, decode_ns) in zip(cases, frames, best, strict=True):
        total = encode_ns + decode_ns
        report.add(
            case=case.name,
            **{
                "encode ns/env": encode_ns,
                "decode ns/env": decode_ns,
                "total ns/env": total,
                "bytes/env": len(frame) / size,
                "x mailslot": total / base_total,
            },
        )
    report.notes.append(
        f"{size} envelopes per batch; best of {repeats} round-robin runs x {rounds} batches; "
        "gc paused"
    )
    report.notes.append("x mailslot: total time relative to encode_batch + decode_batch")
    report.notes.append("json: bytes fields converted to base64 before timing (favours json)")
    report.meta.update({"envelopes_per_batch": size, "rounds": rounds, "repeats": repeats})
    return report
