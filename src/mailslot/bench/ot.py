"""``mailslot bench ot``: real editing traces replayed through the OT core, next to ot-text-unicode.

Each trace (``../shared/data/traces/*.json.gz`` next to the repository; see its README) is a list
of patches ``[pos, deleted, inserted]`` in code points, applied in order from ``startContent`` to
``endContent``. Every patch becomes a ``text-unicode`` op before any clock starts, then each
engine replays the ops and the final text is compared with ``endContent``:

- ``TextBuffer``: ``TextBuffer.apply`` (checks the op, edits in place), what a document actor does;
- ``apply(str)``: ``apply`` on an immutable ``str`` (copies the document on every op);
- ``compose+apply``: ops composed in batches (``--batch``), each batch applied once;
- ``ot-text-unicode``: the npm package's ``type.apply`` in Node (``bench/ot_replay.js``), in the
  same run, so ratios compare like with like on this machine.

Engines are entries of :func:`engines`; a later one (the document actor with its store) is added
there. Ratios (``vs node``) are Node's time over the engine's time: above 1 is faster than Node.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailslot.bench import Report
from mailslot.collab.document import DocumentActor
from mailslot.collab.ot import Op, TextBuffer, apply, compose
from mailslot.collab.protocol.docs import DocError, DocSnapshot, OpAcked, SnapshotAt, SubmitOp
from mailslot.errors import ConfigError
from mailslot.runtime import Actor, ActorRef, ActorSystem
from mailslot.store import GroupCommitter
from mailslot.store.sqlite import SqliteStore

__all__ = [
    "COLUMNS",
    "QUICK_TRACES",
    "Engine",
    "Replay",
    "Trace",
    "add_arguments",
    "default_traces_dir",
    "engines",
    "load_trace",
    "patch_to_op",
    "run",
    "trace_files",
]

QUICK_TRACES = ("friendsforever_flat", "clownschool_flat")
COLUMNS = ["trace", "engine", "ops", "seconds", "ops/s", "vs node", "final ok"]
NODE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Trace:
    """One editing trace, its patches already turned into ops."""

    name: str
    path: Path
    start: str
    end: str
    ops: list[Op]


@dataclass(frozen=True)
class Replay:
    """What one engine did with one trace."""

    seconds: float
    ops: int
    final_ok: bool
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class Engine:
    """A row of the table: a name and how to replay a trace."""

    name: str
    replay: Callable[[Trace], Replay]
    peer: bool = False  # the reference the ratios are taken against


def patch_to_op(pos: int, deleted: int, inserted: str) -> Op:
    """The op for a trace patch: delete, then insert, at ``pos`` (``[]`` if it does neither)."""
    op: Op = []
    if not deleted and not inserted:
        return op
    if pos:
        op.append(pos)
    if deleted:
        op.append({"d": deleted})
    if inserted:
        op.append(inserted)
    return op


def load_trace(path: Path) -> Trace:
    """Read a ``*.json.gz`` trace; a clear :class:`ConfigError` if it is not one."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        ops = [
            op
            for txn in data["txns"]
            for pos, deleted, inserted in txn["patches"]
            if (op := patch_to_op(pos, deleted, inserted))
        ]
        return Trace(
            path.name.removesuffix(".json.gz"), path, data["startContent"], data["endContent"], ops
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a readable editing trace: {exc}") from exc


def _repo_root() -> Path:
    """The checkout this module runs from (or the one around the working directory)."""
    here = Path(__file__).resolve()
    for start in (here.parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "pyproject.toml").is_file() and (
                candidate / "src" / "mailslot"
            ).is_dir():
                return candidate
    return Path.cwd().resolve()


def default_traces_dir() -> Path:
    """``../shared/data/traces`` relative to the repository root."""
    return _repo_root().parent / "shared" / "data" / "traces"


def trace_files(directory: Path, names: list[str] | None, quick: bool) -> list[Path]:
    """The traces to replay: ``names``, else the quick ones, else every trace in ``directory``."""
    if not directory.is_dir():
        raise ConfigError(
            f"traces directory {directory} does not exist; pass --traces-dir DIR "
            "(the editing traces live in ../shared/data/traces next to the repository)"
        )
    available = {p.name.removesuffix(".json.gz"): p for p in sorted(directory.glob("*.json.gz"))}
    if not available:
        raise ConfigError(f"no *.json.gz traces in {directory}")
    wanted = names or (
        list(QUICK_TRACES)
        if quick
        else sorted(available, key=lambda n: available[n].stat().st_size)
    )
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ConfigError(
            f"unknown trace {', '.join(unknown)}; available: {', '.join(sorted(available))}"
        )
    return [available[n] for n in wanted]


# -- engines --------------------------------------------------------------------------------------


def _replay_buffer(trace: Trace) -> Replay:
    buffer = TextBuffer(trace.start)
    ops = trace.ops
    started = time.perf_counter()
    for op in ops:
        buffer.apply(op)
    seconds = time.perf_counter() - started
    return Replay(seconds, len(ops), str(buffer) == trace.end, {"chunks": buffer.chunk_count})


class _Replayer(Actor):
    """A client of one document actor: submits the trace's ops pipelined, a window at a time."""

    def __init__(self, doc: ActorRef, trace: Trace, done: asyncio.Future[float]) -> None:
        self.doc = doc
        self.trace = trace
        self.done = done
        self.sent = 0
        self.acked = 0
        self.errors: list[str] = []

    def receive(self, message: Any) -> None:
        if isinstance(message, OpAcked):
            self.acked += 1
            if self.acked == len(self.trace.ops) + 1:
                self.done.set_result(time.perf_counter())
                return
        elif isinstance(message, DocError):
            self.errors.append(message.message)
            self.done.set_exception(ConfigError(f"the document refused an op: {message.message}"))
            return
        elif message == "start":
            create = {"type": "text-unicode", "data": self.trace.start}
            self.doc.tell(
                SubmitOp(tag=0, c="bench", d="t", v=None, src="r", seq=0, kind="create", op=create)
            )
        self.feed()

    def feed(self) -> None:
        ops = self.trace.ops
        while self.sent < len(ops) and self.sent - self.acked < _WINDOW:
            i = self.sent
            self.doc.tell(SubmitOp(tag=i + 1, c="bench", d="t", v=i + 1, src="r", seq=i + 1,
                                   kind="op", op=ops[i]))  # fmt: skip
            self.sent += 1


_WINDOW = 2000  # ops in flight (below the document's max_pending)


async def _document_replay(trace: Trace) -> Replay:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(f"{tmp}/bench.db")
        async with store, GroupCommitter(store) as committer, ActorSystem("bench") as system:
            done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            doc = system.spawn(
                lambda: DocumentActor("bench", "t", store=store, committer=committer, hub=None),
                mailbox_capacity=2 * _WINDOW + 10,
            )
            client = system.spawn(lambda: _Replayer(doc, trace, done))
            started = time.perf_counter()
            client.tell("start")
            seconds = await done - started
            final = await doc.ask(SnapshotAt(tag=0, c="bench", d="t"), timeout=120)
            stats = committer.statistics()
        return Replay(
            seconds,
            len(trace.ops),
            isinstance(final, DocSnapshot) and final.data == trace.end,
            {"commits": stats.commits, "mean_batch": round(stats.mean_batch_size, 1)},
        )


def _replay_document(trace: Trace) -> Replay:
    """One document actor with its store: every op transformed, applied, committed (SQLite,
    group commit, fsync per batch) and acknowledged."""
    try:
        import uvloop

        return uvloop.run(_document_replay(trace))
    except ImportError:  # pragma: no cover - uvloop is in the default extras
        return asyncio.run(_document_replay(trace))


def _replay_str(trace: Trace) -> Replay:
    text = trace.start
    ops = trace.ops
    started = time.perf_counter()
    for op in ops:
        text = apply(text, op)
    seconds = time.perf_counter() - started
    return Replay(seconds, len(ops), text == trace.end)


def _replay_composed(batch: int) -> Callable[[Trace], Replay]:
    def replay(trace: Trace) -> Replay:
        text = trace.start
        ops = trace.ops
        started = time.perf_counter()
        for i in range(0, len(ops), batch):
            group = ops[i : i + batch]
            combined = group[0]
            for op in group[1:]:
                combined = compose(combined, op)
            text = apply(text, combined)
        seconds = time.perf_counter() - started
        return Replay(seconds, len(ops), text == trace.end)

    return replay


def _node_script() -> Path:
    return _repo_root() / "bench" / "ot_replay.js"


def _replay_node(trace: Trace) -> Replay:
    node = shutil.which("node")
    if node is None:
        raise ConfigError("node is not installed (needed for the ot-text-unicode row; --no-node)")
    script = _node_script()
    package = script.parent.parent / "js" / "node_modules" / "ot-text-unicode"
    if not package.is_dir():
        raise ConfigError(f"{package} is missing; run `make js/node_modules` (or pass --no-node)")
    try:
        done = subprocess.run(
            [node, str(script), str(trace.path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=NODE_TIMEOUT,
        )
        result = json.loads(done.stdout)
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"{script.name} failed on {trace.name}: {exc.stderr.strip()}") from exc
    except (subprocess.TimeoutExpired, ValueError) as exc:
        raise ConfigError(f"{script.name} gave no result for {trace.name}: {exc}") from exc
    return Replay(
        float(result["seconds"]),
        int(result["ops"]),
        bool(result["ok"]),
        {"node": result.get("node"), "ot-text-unicode": result.get("ot-text-unicode")},
    )


def _timed(engine: Engine, trace: Trace) -> Replay:
    # The loaded trace is hundreds of thousands of small lists and dicts that a server would not
    # hold; frozen, the collector does not rescan them during the replay.
    gc.collect()
    gc.freeze()
    try:
        return engine.replay(trace)
    finally:
        gc.unfreeze()


def engines(args: argparse.Namespace) -> list[Engine]:
    """The rows of the table, in order; the peer (Node) last."""
    rows = [
        Engine("mailslot TextBuffer", _replay_buffer),
        Engine("mailslot DocumentActor + SQLite", _replay_document),
        Engine("mailslot apply(str)", _replay_str),
        Engine(f"mailslot compose x{args.batch} + apply", _replay_composed(args.batch)),
    ]
    if not args.no_node:
        rows.append(Engine("ot-text-unicode (node)", _replay_node, peer=True))
    return rows


# -- the suite ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trace",
        action="append",
        metavar="NAME",
        help="replay only this trace (repeatable); --quick: " + ", ".join(QUICK_TRACES),
    )
    parser.add_argument(
        "--traces-dir",
        type=Path,
        default=None,
        help="where the *.json.gz traces are (default: ../shared/data/traces from the repo root)",
    )
    parser.add_argument("--batch", type=int, default=50, help="ops per compose batch (default: 50)")
    parser.add_argument(
        "--no-node", action="store_true", help="skip the ot-text-unicode row (no Node.js)"
    )


def run(args: argparse.Namespace) -> Report:
    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    directory = args.traces_dir or default_traces_dir()
    files = trace_files(directory, args.trace, args.quick)
    report = Report("ot", list(COLUMNS))
    report.meta["traces_dir"] = str(directory)
    report.meta["batch"] = args.batch
    rows = engines(args)
    for path in files:
        trace = load_trace(path)
        results = [(engine, _timed(engine, trace)) for engine in rows]
        peer = next((r for e, r in results if e.peer), None)
        for engine, result in results:
            report.add(
                trace=trace.name,
                engine=engine.name,
                ops=result.ops,
                seconds=result.seconds,
                **{
                    "ops/s": result.ops / result.seconds if result.seconds else None,
                    "vs node": peer.seconds / result.seconds if peer and result.seconds else None,
                    "final ok": "yes" if result.final_ok else "NO",
                },
            )
            if result.extra:
                for key, value in result.extra.items():
                    report.meta[f"{engine.name}: {key}"] = value
            if not result.final_ok:
                report.notes.append(f"{engine.name} ended {trace.name} with the wrong text")
    report.notes.append("vs node = ot-text-unicode's time / this engine's time (> 1: faster)")
    report.notes.append("each patch is one op; every engine checks every op it applies")
    return report
