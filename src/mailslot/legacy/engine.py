"""The old mutex engine: the same documents as the actor engine, served by threads and locks.

Theory of operation
-------------------
This is the service the actor engine replaces, written as a competent team writes a threaded
service, so that it is the fair baseline of the comparison and the fallback of the cutover. It has
the same document semantics as :class:`~mailslot.collab.document.DocumentActor`: an op is
transformed past every op committed since the version it was made against (a resubmitted
``(src, seq)`` is only acknowledged again), applied, made durable in the same store through the same
group committer, and only then acknowledged and published to the same hub; catch-up (subscribe at a
version) and snapshots at a version read the same op log.

Threads. The event loop thread (the gateway, the actors) calls :meth:`LegacyEngine.submit`, which
puts the request on a bounded queue (a full queue is an overload error) and returns. A fixed pool
of worker threads takes requests off it. Replies, publications and everything that touches the
asyncio world go back to the loop thread with ``loop.call_soon_threadsafe``; a worker never touches
an actor or the committer directly (the runtime is single-threaded).

Locks, and the order they are taken in (outer first):

- ``registry``: the table of documents; held only to find or add an entry.
- a per-document lock: the document's text, version and log tail. Held for the whole request,
  including the commit: a version is assigned, applied and made durable before the next op of the
  document is looked at, so the in-memory state is always the committed state and no undo is
  needed. (The actor engine pipelines instead: it applies the next op while the previous one
  commits.) Commits of different documents still share one group commit.
- ``presence``: who is editing which document, and the engine's counters; taken inside a
  document lock.
- ``notify``: the mention inboxes and the digest outbox; taken inside a document lock when an
  op mentions someone (``@name``).

Store. The store is asynchronous and owned by the loop; a worker asks it through the loop
(``run_coroutine_threadsafe`` for reads, a ``concurrent.futures.Future`` completed by the group
committer's future for commits) and blocks until it answers. We chose this over a second,
synchronous ``sqlite3`` connection in the workers because that is what a team with one store layer
would do: one code path for SQLite and PostgreSQL, one writer on the SQLite file (a second writer
would fight the first for SQLite's single write lock, with ``SQLITE_BUSY`` and two fsyncs where one
would do), and group commit shared with the actor engine, so the comparison measures the engines
and not two store implementations.

The planted bug. Every ``digest_every`` mentions, the thread that queued the last one renders a
digest: a preview of each mentioned document. Done right, it empties the outbox under ``notify``,
releases it, then takes each document lock in turn. With ``lock_order_bug`` on, it renders the
previews while holding ``notify`` ("so the digest is consistent with the inbox"): ``notify`` then a
document lock, against the hot path's document lock then ``notify``. A thread committing a mention
on a document the digest is waiting for then deadlocks with it, at a rate that grows with
contention. The lock profiler's order checker reports the inversion from a single run of each path,
before any deadlock.

Stalls. With ``stall_timeout`` set, a watchdog thread declares the engine stalled when a request
has been in a worker's hands that long and no request has finished meanwhile (a deadlock, from
the outside: the workers pile up behind the locks the deadlocked threads hold), counts it, answers
every request of the stalled generation with an error, and restarts: new locks, new workers,
documents reloaded from the store. Threads stuck in the old generation cannot be killed; they are
daemon threads, left blocked, and at most ``max_restarts`` generations are started.

Counters are updated under ``presence`` (``+=`` on an attribute is not atomic across threads).
The in-flight table is a dict updated with single ``dict`` operations, atomic under the GIL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from mailslot.collab import ot
from mailslot.collab.document import (
    TEXT_URI,
    Publish,
    apply_record,
    op_frame,
    state_from_snapshot,
    tail_from,
    transform_error,
)
from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
    DocReply,
    DocRequest,
    DocSnapshot,
    OpAcked,
    SnapshotAt,
    SubmitOp,
    SubscribeDoc,
    UnsubscribeDoc,
)
from mailslot.collab.protocol.messages import (
    ERR_DOC_ALREADY_CREATED,
    ERR_DOC_DOES_NOT_EXIST,
    ERR_MESSAGE_BADLY_FORMED,
    ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT,
    ERR_OT_OP_BADLY_FORMED,
    ERR_OT_OP_NOT_APPLIED,
    ERR_OVERLOADED,
    ERR_UNKNOWN_ERROR,
)
from mailslot.collab.wsframe import text_frame
from mailslot.errors import ConfigError, OTError, StoreBusy, StoreError
from mailslot.store import CommitResult, GroupCommitter, OpRecord, Snapshot, Store

__all__ = ["ERR_ENGINE_RESTARTED", "LegacyConfig", "LegacyEngine", "LegacyStatistics", "mentions"]

log = logging.getLogger("mailslot.legacy")

ERR_ENGINE_RESTARTED = "ERR_MAILSLOT_ENGINE_RESTARTED"
"""The error of requests that were in a stalled (deadlocked) generation when it was restarted."""
ERR_STORE_FAILED = "ERR_MAILSLOT_STORE_FAILED"

_MENTION = re.compile(r"@([A-Za-z0-9_.-]{1,40})")
_T = TypeVar("_T")
Reply = Callable[[DocReply], None]


def mentions(op: Any) -> tuple[str, ...]:
    """The names mentioned (``@name``) in the text a text-unicode op inserts, each once."""
    if not isinstance(op, list | tuple):
        return ()
    found: dict[str, None] = {}
    for component in op:
        if isinstance(component, str) and "@" in component:
            found.update(dict.fromkeys(_MENTION.findall(component)))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class LegacyConfig:
    """Tuning of the old engine.

    Args:
        workers: worker threads.
        queue_size: requests waiting for a worker before new ones are refused as overload.
        log_tail: committed ops kept in memory per document (older ones are read from the store).
        snapshot_every: write a snapshot (under the document lock) after this many ops.
        commit_timeout: seconds a worker waits for the store before failing the request.
        digest_every: mentions between two notification digests.
        inbox_size: notifications kept per user.
        lock_order_bug: plant the lock-order inversion (see the module docstring).
        stall_timeout: seconds a request may stay in a worker before the engine is declared
            stalled and restarted; ``None``: no watchdog.
        max_restarts: generations started after stalls, at most.
        now_ms: the wall clock for op timestamps, in ms since the epoch.
    """

    workers: int = 32
    queue_size: int = 10_000
    log_tail: int = 1000
    snapshot_every: int = 200
    commit_timeout: float = 30.0
    digest_every: int = 16
    inbox_size: int = 100
    lock_order_bug: bool = False
    stall_timeout: float | None = None
    max_restarts: int = 20
    now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))

    def __post_init__(self) -> None:
        for name in ("workers", "queue_size", "log_tail", "snapshot_every", "digest_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"legacy engine: {name} must be at least 1")
        if self.stall_timeout is not None and not self.stall_timeout > 0:
            raise ConfigError("legacy engine: stall_timeout must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class LegacyStatistics:
    """A snapshot of the old engine's counters."""

    generation: int
    documents: int
    workers: int
    queued: int
    in_flight: int
    ops_applied: int
    transforms: int
    rejected: int
    mentions: int
    digests: int
    editors: int
    stalls: int
    restarts: int


class _Logged:
    __slots__ = ("frame", "record")

    def __init__(self, record: OpRecord) -> None:
        self.record = record
        self.frame: str | None = None


class _Doc:
    """One document's state; every field is guarded by ``lock``."""

    __slots__ = ("c", "d", "loaded", "lock", "log", "snapshot_version", "text", "type", "version")

    def __init__(self, c: str, d: str) -> None:
        self.c = c
        self.d = d
        self.lock = threading.Lock()
        self.loaded = False
        self.type: str | None = None
        self.text: ot.TextBuffer | None = None
        self.version = 0
        self.snapshot_version = 0
        self.log: deque[_Logged] = deque()


class _Job(NamedTuple):
    rid: int
    request: DocRequest
    reply: Reply
    author: str | None


class _Generation:
    """One incarnation of the shared state; a restart after a stall makes a new one."""

    def __init__(self, number: int, config: LegacyConfig) -> None:
        self.number = number
        self.registry = threading.Lock()
        self.docs: dict[tuple[str, str], _Doc] = {}
        self.presence = threading.Lock()
        self.editors: dict[tuple[str, str], dict[str, int]] = {}
        self.counts = {"ops": 0, "transforms": 0, "rejected": 0}
        self.notify = threading.Lock()
        self.inbox: dict[str, deque[tuple[str, str, int]]] = {}
        self.outbox: list[tuple[str, str, str]] = []
        self.mentions = 0
        self.digests = 0
        self.last_digest: tuple[str, ...] = ()
        self.jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=config.queue_size)
        self.threads: list[threading.Thread] = []
        self.stopped = False


class LegacyEngine:
    """The threaded document service (see the module docstring).

    Call :meth:`start` on the event loop thread, then :meth:`submit` from that thread; replies
    are called on the loop thread.

    Args:
        store: the store both engines share.
        committer: the group committer both engines share.
        publish: called on the loop thread with each committed op (the hub's ``tell``).
        config: tuning.
    """

    def __init__(
        self,
        *,
        store: Store,
        committer: GroupCommitter,
        publish: Callable[[Publish], None] | None = None,
        config: LegacyConfig | None = None,
    ) -> None:
        self.store = store
        self.committer = committer
        self.publish = publish
        self.config = config or LegacyConfig()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gen: _Generation | None = None
        self._ids = itertools.count(1)
        self._inflight: dict[int, tuple[float, _Job, _Generation]] = {}
        self._watch_stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._finished = 0
        self.stalls = 0
        self.restarts = 0
        self.on_stall: Callable[[str], None] | None = None

    # ---- lifecycle (loop thread) -------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the workers (and the stall watchdog if configured)."""
        if self._gen is not None:
            raise ConfigError("the legacy engine is started already")
        self._loop = loop or asyncio.get_running_loop()
        self._gen = self._generation(1)
        if self.config.stall_timeout is not None:
            self._watchdog = threading.Thread(
                target=self._watch, name="legacy-stall-watchdog", daemon=True
            )
            self._watchdog.start()

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Finish the queued requests, then stop the workers (stuck ones are left behind)."""
        gen, self._gen = self._gen, None
        self._watch_stop.set()
        if gen is None:
            return
        for _ in gen.threads:
            await asyncio.get_running_loop().run_in_executor(None, gen.jobs.put, None)
        deadline = time.monotonic() + timeout
        threads = [*gen.threads, *([self._watchdog] if self._watchdog is not None else [])]

        def join() -> None:
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))

        await asyncio.get_running_loop().run_in_executor(None, join)

    @property
    def running(self) -> bool:
        return self._gen is not None

    def submit(self, request: DocRequest, reply: Reply, *, author: str | None = None) -> None:
        """Queue a request; ``reply`` is called once on the loop thread (not for unsubscribe).

        ``author`` is the path of the session the request comes from (the hub does not echo an
        op to its author).
        """
        gen = self._gen
        tag = getattr(request, "tag", None)
        if gen is None:
            if tag is not None:
                self._call_soon(reply, DocError(tag=tag, code=ERR_OVERLOADED, message="stopped"))
            return
        try:
            gen.jobs.put_nowait(_Job(next(self._ids), request, reply, author))
        except queue.Full:
            if tag is not None:
                message = f"the legacy engine has {self.config.queue_size} requests waiting"
                self._call_soon(reply, DocError(tag=tag, code=ERR_OVERLOADED, message=message))

    def evict(self, c: str, d: str) -> None:
        """Forget the cached state of ``c/d`` (it is reloaded from the store on next use).

        The cutover calls this when a document moves between engines, with no request of the
        document in flight.
        """
        gen = self._gen
        if gen is not None:
            with gen.registry:
                gen.docs.pop((c, d), None)

    def statistics(self) -> LegacyStatistics:
        gen = self._gen
        if gen is None:
            return LegacyStatistics(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, self.stalls, self.restarts)
        with gen.presence:
            counts = dict(gen.counts)
            editors = sum(len(e) for e in gen.editors.values())
        return LegacyStatistics(
            generation=gen.number,
            documents=len(gen.docs),
            workers=len(gen.threads),
            queued=gen.jobs.qsize(),
            in_flight=len(self._inflight),
            ops_applied=counts["ops"],
            transforms=counts["transforms"],
            rejected=counts["rejected"],
            mentions=gen.mentions,
            digests=gen.digests,
            editors=editors,
            stalls=self.stalls,
            restarts=self.restarts,
        )

    def inbox(self, user: str) -> list[tuple[str, str, int]]:
        """The mentions of ``user`` kept by the engine: ``(collection, doc, version)``."""
        gen = self._gen
        if gen is None:
            return []
        with gen.notify:
            return list(gen.inbox.get(user, ()))

    # ---- restart after a stall ---------------------------------------------------------------

    def _generation(self, number: int) -> _Generation:
        gen = _Generation(number, self.config)
        for i in range(self.config.workers):
            t = threading.Thread(
                target=self._work, args=(gen,), name=f"legacy-{number}-{i}", daemon=True
            )
            gen.threads.append(t)
            t.start()
        return gen

    def _watch(self) -> None:
        limit = self.config.stall_timeout
        assert limit is not None
        seen, since = self._finished, time.monotonic()
        while not self._watch_stop.wait(max(0.01, limit / 4)):
            gen = self._gen
            if gen is None:
                return
            now = time.monotonic()
            if self._finished != seen:
                seen, since = self._finished, now
                continue
            ages = [now - t0 for t0, _, g in list(self._inflight.values()) if g is gen]
            # stalled: a request has waited that long and none has finished meanwhile (a busy
            # engine finishes others; a deadlocked one, whose workers pile up, does not)
            if ages and max(ages) >= limit and now - since >= limit:
                self._stalled(gen, max(ages))
                since = now

    def _stalled(self, gen: _Generation, age: float) -> None:
        self.stalls += 1
        reason = f"a request has waited {age:.1f}s in generation {gen.number}"
        log.warning("legacy engine stalled: %s; restarting", reason)
        if self.on_stall is not None:
            self.on_stall(reason)
        if self.restarts >= self.config.max_restarts:
            log.error("legacy engine: %d restarts already; staying stalled", self.restarts)
            self._watch_stop.set()
            return
        self.restarts += 1
        self._gen = self._generation(gen.number + 1)
        gen.stopped = True
        restarted = f"the engine was restarted after a stall ({reason}); retry"
        for rid, (_, job, g) in list(self._inflight.items()):
            if g is gen:
                self._answer(job, ERR_ENGINE_RESTARTED, restarted)
                self._inflight.pop(rid, None)
        while True:
            try:
                job_or_none = gen.jobs.get_nowait()
            except queue.Empty:
                break
            if job_or_none is not None:
                self._fail(job_or_none, ERR_ENGINE_RESTARTED, restarted)
        for _ in gen.threads:
            with contextlib.suppress(queue.Full):
                gen.jobs.put_nowait(None)

    # ---- worker threads ----------------------------------------------------------------------

    def _work(self, gen: _Generation) -> None:
        while True:
            job = gen.jobs.get()
            if job is None:
                return
            if gen.stopped:
                self._fail(job, ERR_ENGINE_RESTARTED, "the engine was restarted; retry")
                continue
            self._inflight[job.rid] = (time.monotonic(), job, gen)
            try:
                self._handle(gen, job)
            except Exception as exc:
                log.exception("legacy engine: request failed")
                self._answer(job, ERR_UNKNOWN_ERROR, f"{type(exc).__name__}: {exc}")
            finally:
                self._inflight.pop(job.rid, None)
                self._finished += 1  # may lose a count between threads; it only has to move

    def _handle(self, gen: _Generation, job: _Job) -> None:
        request = job.request
        if isinstance(request, SubmitOp):
            self._submit(gen, job, request)
        elif isinstance(request, SubscribeDoc):
            self._subscribe(gen, job, request)
        elif isinstance(request, SnapshotAt):
            self._snapshot_at(gen, job, request)
        elif isinstance(request, UnsubscribeDoc):
            with gen.presence:
                editors = gen.editors.get((request.c, request.d))
                if editors is not None:
                    editors.pop(job.author or "", None)

    def _doc(self, gen: _Generation, c: str, d: str) -> _Doc:
        key = (c, d)
        with gen.registry:
            doc = gen.docs.get(key)
            if doc is None:
                doc = gen.docs[key] = _Doc(c, d)
            return doc

    def _load(self, doc: _Doc) -> None:
        """Called with ``doc.lock`` held."""
        if doc.loaded:
            return
        parts = self._run(self.store.load(doc.c, doc.d))
        state = state_from_snapshot(parts.snapshot)
        doc.log.clear()
        for record in parts.ops:
            state = apply_record(state, record)
            doc.log.append(_Logged(record))
        doc.type, doc.text = state
        doc.version = parts.version
        doc.snapshot_version = parts.snapshot.version if parts.snapshot else 0
        self._trim(doc)
        self._call_soon(self.committer.reset, doc.c, doc.d)
        doc.loaded = True

    def _since(self, doc: _Doc, v: int) -> list[_Logged] | None:
        """The ops at versions >= v (called with ``doc.lock`` held); ``None`` if some are lost."""
        if v == doc.version:
            return []
        first = doc.log[0].record.version if doc.log else doc.version
        if doc.log and v >= first:
            return tail_from(doc.log, v - first)
        older = self._run(self.store.ops_since(doc.c, doc.d, v, first))
        since = [_Logged(r) for r in older]
        since.extend(doc.log)
        return since if len(since) == doc.version - v else None

    def _submit(self, gen: _Generation, job: _Job, m: SubmitOp) -> None:
        kind, op = m.kind, m.op
        if kind == "op":
            if m.v is None:
                return self._reject(gen, job, ERR_MESSAGE_BADLY_FORMED, "an op needs 'v'")
            try:
                ot.check(op)
                op = ot.normalize(op)
            except OTError as exc:
                return self._reject(gen, job, ERR_OT_OP_BADLY_FORMED, str(exc))
        doc = self._doc(gen, m.c, m.d)
        digest_due = False
        with doc.lock:
            self._load(doc)
            v = doc.version if m.v is None else m.v
            if v > doc.version:
                message = f"op version {v} is newer than the document's {doc.version}"
                return self._reject(gen, job, ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT, message)
            since = self._since(doc, v)
            if since is None:
                return self._reject(gen, job, ERR_UNKNOWN_ERROR, f"ops since {v} are missing")
            past: list[Any] = []
            for logged in since:
                applied = logged.record
                if applied.src == m.src and applied.seq == m.seq:
                    ack = OpAcked(tag=m.tag, v=applied.version, src=m.src, seq=m.seq)
                    return self._reply(job, ack)
                error = transform_error(kind, applied.kind)
                if error is not None:
                    return self._reject(gen, job, *error)
                if kind == "op" and applied.kind == "op":
                    past.append(applied.op)
            if past:  # all well formed, as in the actor engine
                op = ot.transform_past(op, past, "left", checked=True)
            transforms = len(past)
            error = self._apply(doc, kind, op)
            if error is not None:
                return self._reject(gen, job, *error)
            record = OpRecord(
                collection=m.c,
                doc=m.d,
                version=doc.version,
                src=m.src,
                seq=m.seq,
                op=op,
                timestamp=self.config.now_ms(),
                kind=kind,
                user=m.user,
            )
            try:
                self._commit(record)
            except StoreBusy:
                doc.loaded = False  # the op is applied in memory only: reload the durable state
                return self._reject(gen, job, ERR_OVERLOADED, "the store is busy; try again")
            except (StoreError, TimeoutError) as exc:
                doc.loaded = False
                message = f"the op was not stored ({exc!r}); reload the document"
                return self._reject(gen, job, ERR_STORE_FAILED, message)
            doc.version += 1
            logged = _Logged(record)
            doc.log.append(logged)
            self._trim(doc)
            with gen.presence:
                gen.editors.setdefault((m.c, m.d), {})[job.author or m.src] = record.timestamp
                gen.counts["ops"] += 1
                gen.counts["transforms"] += transforms
            names = mentions(op) if kind == "op" else ()
            if names:
                with gen.notify:
                    for name in names:
                        box = gen.inbox.get(name)
                        if box is None:
                            box = gen.inbox[name] = deque(maxlen=self.config.inbox_size)
                        box.append((m.c, m.d, record.version))
                        gen.outbox.append((m.c, m.d, name))
                    gen.mentions += len(names)
                    digest_due = len(gen.outbox) >= self.config.digest_every
            frames = tuple(self._frame(doc, x) for x in since)
            self._reply(
                job, OpAcked(tag=m.tag, v=record.version, src=m.src, seq=m.seq, frames=frames)
            )
            if self.publish is not None:
                frame = self._frame(doc, logged)
                publish = Publish(
                    c=m.c,
                    d=m.d,
                    v=record.version,
                    src=m.src,
                    frame=frame,
                    wire=text_frame(frame.encode()),
                    author=job.author,
                )
                self._call_soon(self.publish, publish)
            if doc.version - doc.snapshot_version >= self.config.snapshot_every:
                self._snapshot(doc)
        if digest_due:
            self._digest(gen)
        return None

    def _apply(self, doc: _Doc, kind: str, op: Any) -> tuple[str, str] | None:
        """Apply to the in-memory document (``doc.lock`` held); an error, or ``None``."""
        if kind == "op":
            if doc.type is None or doc.text is None:
                return (ERR_DOC_DOES_NOT_EXIST, "Document does not exist")
            try:
                doc.text.apply(op)
            except OTError as exc:
                doc.loaded = False  # the text may be half edited
                return (ERR_OT_OP_NOT_APPLIED, str(exc))
        elif kind == "create":
            if doc.type is not None:
                return (ERR_DOC_ALREADY_CREATED, "Document already exists")
            data = op.get("data") if isinstance(op, dict) else ""
            doc.type, doc.text = TEXT_URI, ot.TextBuffer(data if isinstance(data, str) else "")
        else:
            if doc.type is None:
                return (ERR_DOC_DOES_NOT_EXIST, "Document does not exist")
            doc.type, doc.text = None, None
        return None

    def _snapshot(self, doc: _Doc) -> None:
        snapshot = Snapshot(
            collection=doc.c,
            doc=doc.d,
            version=doc.version,
            type=doc.type,
            data=str(doc.text) if doc.text is not None else None,
            timestamp=self.config.now_ms(),
        )
        try:
            self._run(self.store.save_snapshot(snapshot))
        except (StoreError, TimeoutError) as exc:
            log.warning("%s/%s: snapshot at %d failed: %r", doc.c, doc.d, doc.version, exc)
            return
        doc.snapshot_version = doc.version

    def _digest(self, gen: _Generation) -> None:
        """Render a preview of each mentioned document (see the planted bug above)."""
        if self.config.lock_order_bug:
            with gen.notify:
                batch, gen.outbox = gen.outbox, []
                previews = [self._preview(gen, c, d, name) for c, d, name in batch]
                gen.digests += 1
                gen.last_digest = tuple(previews)
            return
        with gen.notify:
            batch, gen.outbox = gen.outbox, []
        previews = [self._preview(gen, c, d, name) for c, d, name in batch]
        with gen.notify:
            gen.digests += 1
            gen.last_digest = tuple(previews)

    def _preview(self, gen: _Generation, c: str, d: str, name: str) -> str:
        doc = self._doc(gen, c, d)
        with doc.lock:
            text = doc.text.slice(0, min(60, len(doc.text))) if doc.text is not None else ""
        return f"@{name} in {c}/{d}: {text}"

    def _subscribe(self, gen: _Generation, job: _Job, m: SubscribeDoc) -> None:
        doc = self._doc(gen, m.c, m.d)
        with doc.lock:
            self._load(doc)
            if m.v is None:
                self._reply(job, self._current(doc, m.tag))
            elif m.v > doc.version:
                message = f"version {m.v} is newer than {m.c}/{m.d}'s {doc.version}"
                self._reply(
                    job,
                    DocError(
                        tag=m.tag, code=ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT, message=message
                    ),
                )
            else:
                since = self._since(doc, m.v)
                if since is None:
                    self._answer(job, ERR_UNKNOWN_ERROR, f"ops since {m.v} are missing")
                else:
                    self._reply(
                        job, DocOps(tag=m.tag, frames=tuple(self._frame(doc, x) for x in since))
                    )
            if m.subscribe:
                with gen.presence:
                    gen.editors.setdefault((m.c, m.d), {})[job.author or ""] = self.config.now_ms()

    def _snapshot_at(self, gen: _Generation, job: _Job, m: SnapshotAt) -> None:
        doc = self._doc(gen, m.c, m.d)
        with doc.lock:
            self._load(doc)
            if m.version is None and m.timestamp is None:
                return self._reply(job, self._current(doc, m.tag))
            if m.version is not None and m.version > doc.version:
                message = "Requested version exceeds latest snapshot version"
                return self._reply(
                    job,
                    DocError(
                        tag=m.tag, code=ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT, message=message
                    ),
                )
        # an old version: read the store, without holding the document
        parts = self._run(
            self.store.snapshot_parts(m.c, m.d, version=m.version, timestamp=m.timestamp)
        )
        state = state_from_snapshot(parts.snapshot)
        for record in parts.ops:
            state = apply_record(state, record)
        type_uri, text = state
        data = str(text) if text is not None else None
        self._reply(job, DocSnapshot(tag=m.tag, v=parts.version, type=type_uri, data=data))
        return None

    def _current(self, doc: _Doc, tag: int) -> DocSnapshot:
        data = str(doc.text) if doc.text is not None else None
        return DocSnapshot(tag=tag, v=doc.version, type=doc.type, data=data)

    def _frame(self, doc: _Doc, logged: _Logged) -> str:
        if logged.frame is None:
            logged.frame = op_frame(doc.c, doc.d, logged.record)
        return logged.frame

    def _trim(self, doc: _Doc) -> None:
        while len(doc.log) > self.config.log_tail:
            doc.log.popleft()

    # ---- talking to the loop -----------------------------------------------------------------

    def _reply(self, job: _Job, reply: DocReply) -> None:
        """Answer ``job`` once, on the loop thread (a restart may have answered it already)."""
        if self._inflight.pop(job.rid, None) is None:
            return
        self._call_soon(job.reply, reply)

    def _answer(self, job: _Job, code: str, message: str) -> None:
        tag = getattr(job.request, "tag", None)
        if tag is not None:
            self._reply(job, DocError(tag=tag, code=code, message=message))

    def _fail(self, job: _Job, code: str, message: str) -> None:
        """Answer a job that never reached a worker."""
        tag = getattr(job.request, "tag", None)
        if tag is not None:
            self._call_soon(job.reply, DocError(tag=tag, code=code, message=message))

    def _reject(self, gen: _Generation, job: _Job, code: str, message: str) -> None:
        with gen.presence:
            gen.counts["rejected"] += 1
        self._answer(job, code, message)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(fn, *args)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a store coroutine on the loop and wait for it (worker threads only)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self.config.commit_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the store did not answer in time") from None

    def _commit(self, record: OpRecord) -> CommitResult:
        """Hand ``record`` to the group committer on the loop; wait until it is durable."""
        done: concurrent.futures.Future[CommitResult] = concurrent.futures.Future()
        self._call_soon(self._commit_on_loop, record, done)
        try:
            return done.result(self.config.commit_timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError("the commit did not finish in time") from None

    def _commit_on_loop(
        self, record: OpRecord, done: concurrent.futures.Future[CommitResult]
    ) -> None:
        try:
            future = self.committer.submit_nowait(record)
        except Exception as exc:
            done.set_exception(exc)
            return

        def transfer(f: asyncio.Future[CommitResult]) -> None:
            if f.cancelled():
                done.set_exception(StoreError("the commit was cancelled"))
            elif (exc := f.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(f.result())

        future.add_done_callback(transfer)
