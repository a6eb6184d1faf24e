"""Document actors: one per document, the only place a document's state lives.

Theory of operation
-------------------
A :class:`DocumentActor` owns one document: its version, its type and its text (a
:class:`~mailslot.collab.ot.TextBuffer`, edited in place), and the tail of its op log. It starts by
loading the document from the store (latest snapshot plus the ops after it), so a restart by its
supervisor, a passivation or a move to another node all come back to the durable state.

An op (:class:`SubmitOp`) is handled as ShareDB does: it is transformed past every op applied since
the version it was made against (``transform(op, applied, "left")``); an op whose ``(src, seq)``
is among those is a resubmission and is only acknowledged again. The transformed op is applied to
the text at once and handed to the group committer, and the actor goes on with the next message
while the commit runs (pipelining). When the committer confirms, in version order, the actor sends
the author the ops it had not seen, then its ack, and publishes the op to the document's
subscribers through the :class:`~mailslot.collab.hub.Hub`. Nothing is acknowledged or shown to
anyone before it is durable: snapshots and catch-up answers are at the *committed* version, which
the actor rebuilds when commits are in flight by undoing the pending ops (each keeps its inverse).

A commit that fails (the store refused it) fails the actor: the authors of every pending op get an
error (their clients roll back and refetch), and the supervisor restarts the actor, which reloads
the durable state.

Every ``snapshot_every`` committed ops a snapshot is written, off the hot path. After
``idle_timeout`` without a message the actor asks its manager to passivate it; the manager stops it
once its mailbox is empty and starts a fresh one on the next message for that document (messages
that arrive meanwhile wait in the manager, in order).

:class:`DocumentManager` is the parent of the document actors of one node: it routes each request
to the document's actor by ``(collection, id)``, creating it on first use, and there is never more
than one actor per document.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import msgspec

from mailslot.collab import mentions, ot
from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
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
    ERR_DOC_WAS_DELETED,
    ERR_MESSAGE_BADLY_FORMED,
    ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT,
    ERR_OT_OP_BADLY_FORMED,
    ERR_OT_OP_NOT_APPLIED,
    ERR_OVERLOADED,
    ERR_UNKNOWN_ERROR,
    encode,
)
from mailslot.collab.wsframe import text_frame
from mailslot.errors import InvalidActorName, MailboxFull, OTError, StoreBusy, StoreError
from mailslot.meters import Meters
from mailslot.runtime import (
    Actor,
    ActorRef,
    Directive,
    ReceiveTimeout,
    SupervisorStrategy,
    Terminated,
)
from mailslot.store import CommitResult, GroupCommitter, OpRecord, Snapshot, Store

__all__ = [
    "DocumentActor",
    "DocumentConfig",
    "DocumentManager",
    "DocumentStatistics",
    "Passivate",
    "Publish",
    "apply_record",
    "op_frame",
    "state_from_snapshot",
    "transform_error",
]

log = logging.getLogger("mailslot.collab.document")

TEXT_URI = ot.TYPE_URI
_TYPE_URIS = {ot.TYPE_NAME: TEXT_URI, TEXT_URI: TEXT_URI}


@dataclass(frozen=True, slots=True)
class DocumentConfig:
    """Tuning for document actors.

    Args:
        snapshot_every: write a snapshot after this many committed ops.
        idle_timeout: passivate after this many seconds without a message.
        log_tail: committed ops kept in memory for transforms and catch-up (older ones are read
            from the store).
        max_pending: ops applied but not yet committed before new ones are refused as overload.
        now_ms: the wall clock for op timestamps, in ms since the epoch (a parameter for tests).
        meters: where ops applied, rejected, transforms and commit latency are reported.
        mailbox_capacity: each document actor's mailbox; past 80% its senders are slowed down.
        acks_via_hub: hand each ack to the hub with the op's broadcast (one node: the hub then
            delivers it after every earlier op of the document, so a subscribed author needs no
            copies of the ops it missed); ``False`` sends acks directly (a cluster's hub is a
            topic).
    """

    snapshot_every: int = 200
    idle_timeout: float = 300.0
    log_tail: int = 1000
    max_pending: int = 5000
    now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    meters: Meters | None = None
    mailbox_capacity: int = 10_000
    acks_via_hub: bool = True
    #: told a :class:`~mailslot.collab.mentions.Mentioned` for each committed op that creates
    #: ``@name`` mentions (the notification dispatcher); ``None``: mentions are not looked for
    mentions: ActorRef | None = None


class Publish(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A committed op for the document's subscribers (to the hub); ``author`` gets no copy."""

    c: str
    d: str
    v: int
    src: str
    frame: str
    wire: bytes = b""
    author: str | None = None
    #: the author's ack, for the hub to deliver after the broadcast (``acks_via_hub``), and the
    #: ops the author was transformed past: sent with the ack only if the author is not
    #: subscribed (a subscriber has had them from the hub already, in order)
    ack_to: Any = None
    ack: OpAcked | None = None
    missed: tuple[str, ...] = ()


class _Committed(msgspec.Struct, frozen=True):
    version: int
    duplicate: bool


class _CommitFailed(msgspec.Struct, frozen=True):
    version: int
    error: str


class _SnapshotSaved(msgspec.Struct, frozen=True):
    version: int


class Passivate(msgspec.Struct, frozen=True):
    """A document actor asks its manager to stop it (idle); ``key`` is its child name."""

    key: str


class _ReadDone(msgspec.Struct, frozen=True):
    reply_to: Any
    reply: Any


@dataclass(slots=True)
class _Logged:
    record: OpRecord
    frame: str | None = None


@dataclass(slots=True)
class _Pending:
    logged: _Logged
    author: ActorRef | None
    tag: int | None
    missed: tuple[str, ...]
    undo: tuple[Any, ...]
    future: asyncio.Future[CommitResult]
    arrived: float = 0.0
    done: bool = False
    again: list[tuple[ActorRef, int]] = field(default_factory=list)
    mentioned: tuple[tuple[str, ...], tuple[str, ...]] | None = None


@dataclass(frozen=True, slots=True)
class DocumentStatistics:
    """A snapshot of one document actor."""

    collection: str
    doc: str
    version: int
    committed_version: int
    pending: int
    length: int
    ops_applied: int
    transforms: int


T = TypeVar("T")


def tail_from(log: deque[T], start: int) -> list[T]:
    """``log[start:]`` as a list, walked from the nearer end of the deque.

    An op log holds up to ``log_tail`` ops and a client usually misses only the last few:
    ``islice(log, start, None)`` would step through all the others first, on every op.
    """
    n = len(log) - start
    if n <= 0:
        return []
    if n < start:
        tail = list(itertools.islice(reversed(log), n))
        tail.reverse()
        return tail
    return list(itertools.islice(log, start, None))


def op_frame(c: str, d: str, record: OpRecord) -> str:
    """The ``op`` message every subscriber receives for ``record`` (encoded once)."""
    message: dict[str, Any] = {
        "a": "op",
        "c": c,
        "d": d,
        "v": record.version,
        "src": record.src,
        "seq": record.seq,
    }
    if record.kind == "op":
        message["op"] = record.op
    elif record.kind == "create":
        message["create"] = record.op
    else:
        message["del"] = True
    return encode(message).decode()


def apply_record(
    state: tuple[str | None, ot.TextBuffer | None], record: OpRecord
) -> tuple[str | None, ot.TextBuffer | None]:
    """Replay one stored op onto ``(type, text)`` (used when loading and for old versions)."""
    type_uri, text = state
    if record.kind == "create":
        data = record.op.get("data") if isinstance(record.op, dict) else None
        uri = _TYPE_URIS.get(record.op.get("type", "")) if isinstance(record.op, dict) else None
        return uri or TEXT_URI, ot.TextBuffer(data if isinstance(data, str) else "")
    if record.kind == "del":
        return None, None
    if text is None:
        raise StoreError(
            f"op at version {record.version} edits a document that does not exist",
            doc_id=record.doc,
        )
    text.apply(record.op)
    return type_uri, text


def state_from_snapshot(snapshot: Snapshot | None) -> tuple[str | None, ot.TextBuffer | None]:
    """``(type, text)`` of a stored snapshot (``(None, None)`` for a missing document)."""
    if snapshot is None or snapshot.type is None:
        return None, None
    uri = _TYPE_URIS.get(snapshot.type, snapshot.type)
    data = snapshot.data if isinstance(snapshot.data, str) else ""
    return uri, ot.TextBuffer(data)


class DocumentActor(Actor):
    """The single owner of one document (see the module docstring)."""

    def __init__(
        self,
        c: str,
        d: str,
        *,
        store: Store,
        committer: GroupCommitter,
        hub: ActorRef | None,
        manager: ActorRef | None = None,
        config: DocumentConfig | None = None,
    ) -> None:
        self.c = c
        self.d = d
        self.store = store
        self.committer = committer
        self.hub = hub
        self.manager = manager
        self.config = config or DocumentConfig()
        self.type: str | None = None
        self.text: ot.TextBuffer | None = None
        self.version = 0
        self.committed = 0
        self.log: deque[_Logged] = deque()
        self.pending: deque[_Pending] = deque()
        self.snapshot_version = 0
        self.snapshot_in_flight = False
        self.passivate_after_snapshot = False
        self.ops_applied = 0
        self.transforms = 0
        self.meters = self.config.meters

    # ---- lifecycle ---------------------------------------------------------------------------

    async def started(self) -> None:
        parts = await self.store.load(self.c, self.d)
        state = state_from_snapshot(parts.snapshot)
        for record in parts.ops:
            state = apply_record(state, record)
            self.log.append(_Logged(record))
        self.type, self.text = state
        self.version = self.committed = parts.version
        self.snapshot_version = parts.snapshot.version if parts.snapshot else 0
        self._trim_log()
        self.committer.reset(self.c, self.d)
        self.context.set_receive_timeout(self.config.idle_timeout)

    async def stopping(self) -> None:
        """Stopping (passivation, shutdown): see the commits in flight through, ack, publish."""
        while self.pending:
            p = self.pending[0]
            version = p.logged.record.version
            try:
                await p.future
            except Exception as exc:  # the store refused it: tell the authors, stop anyway
                log.warning("%s/%s: commit failed while stopping: %r", self.c, self.d, exc)
                self.on_commit_failed(_CommitFailed(version, repr(exc)), reraise=False)
                return
            self.on_committed(version)

    # ---- dispatch ----------------------------------------------------------------------------

    def receive(self, message: Any) -> Any:
        if isinstance(message, SubmitOp):
            return self.submit(message, self.context.sender)
        if isinstance(message, _Committed):
            self.on_committed(message.version)
        elif isinstance(message, SubscribeDoc):
            return self.subscribe(message, self.context.sender)
        elif isinstance(message, UnsubscribeDoc):
            pass  # subscriptions live in the hub; nothing to forget here
        elif isinstance(message, SnapshotAt):
            return self.snapshot_at(message, self.context.sender)
        elif isinstance(message, _ReadDone):
            _tell(message.reply_to, message.reply)
        elif isinstance(message, _CommitFailed):
            self.on_commit_failed(message)
        elif isinstance(message, _SnapshotSaved):
            self.snapshot_in_flight = False
            self.snapshot_version = max(self.snapshot_version, message.version)
            if self.passivate_after_snapshot:
                self.passivate_after_snapshot = False
                self.on_idle()
        elif isinstance(message, ReceiveTimeout):
            self.on_idle()
        else:
            self.context.unhandled(message)
        return None

    # ---- reads -------------------------------------------------------------------------------

    def subscribe(self, m: SubscribeDoc, sender: ActorRef | None) -> Any:
        if m.v is None:
            type_uri, data = self.committed_state()
            _tell(sender, DocSnapshot(tag=m.tag, v=self.committed, type=type_uri, data=data))
            return None
        if m.v > self.committed:
            _tell(
                sender,
                DocError(
                    tag=m.tag,
                    code=ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT,
                    message=f"version {m.v} is newer than {self.c}/{self.d}'s {self.committed}",
                ),
            )
            return None
        since = self.logged_since(m.v)
        if since is not None:
            frames = tuple(self.frame_of(x) for x in since if x.record.version < self.committed)
            _tell(sender, DocOps(tag=m.tag, frames=frames))
            return None
        self.read_then_reply(sender, m.tag, self.catch_up_from_store(m.tag, m.v))
        return None

    async def catch_up_from_store(self, tag: int, v: int) -> DocOps:
        first = self.log[0].record.version if self.log else self.committed
        older = await self.store.ops_since(self.c, self.d, v, first)
        frames = [op_frame(self.c, self.d, r) for r in older]
        frames.extend(self.frame_of(x) for x in self.log if x.record.version < self.committed)
        return DocOps(tag=tag, frames=tuple(frames))

    def snapshot_at(self, m: SnapshotAt, sender: ActorRef | None) -> Any:
        if m.version is None and m.timestamp is None:
            type_uri, data = self.committed_state()
            _tell(sender, DocSnapshot(tag=m.tag, v=self.committed, type=type_uri, data=data))
            return None
        if m.version is not None and m.version > self.committed:
            _tell(
                sender,
                DocError(
                    tag=m.tag,
                    code=ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT,
                    message="Requested version exceeds latest snapshot version",
                ),
            )
            return None
        self.read_then_reply(sender, m.tag, self.build_snapshot(m))
        return None

    async def build_snapshot(self, m: SnapshotAt) -> DocSnapshot:
        parts = await self.store.snapshot_parts(
            self.c, self.d, version=m.version, timestamp=m.timestamp
        )
        state = state_from_snapshot(parts.snapshot)
        for record in parts.ops:
            state = apply_record(state, record)
        type_uri, text = state
        return DocSnapshot(
            tag=m.tag, v=parts.version, type=type_uri, data=str(text) if text else None
        )

    def read_then_reply(self, sender: ActorRef | None, tag: int, read: Any) -> None:
        """Run a store read off the actor's turn; reply when it is done (or fails)."""

        def failed(exc: BaseException) -> _ReadDone:
            log.warning("%s/%s: store read failed: %r", self.c, self.d, exc)
            return _ReadDone(sender, DocError(tag=tag, code=ERR_UNKNOWN_ERROR, message=str(exc)))

        self.context.pipe_to_self(read, lambda reply: _ReadDone(sender, reply), failed)

    def committed_state(self) -> tuple[str | None, str | None]:
        """The document at the committed version (undoing ops whose commit is in flight)."""
        if not self.pending:
            return self.type, str(self.text) if self.text is not None else None
        type_uri = self.type
        text = str(self.text) if self.text is not None else None
        for p in reversed(self.pending):
            undo = p.undo
            if undo[0] == "op":
                assert text is not None
                text = ot.apply(text, undo[1])
            elif undo[0] == "create":
                type_uri, text = None, None
            else:  # "del": restore what was deleted
                type_uri, text = undo[1], undo[2]
        return type_uri, text

    def logged_since(self, v: int) -> list[_Logged] | None:
        """The ops applied at versions >= v, if they are all still in memory."""
        if v == self.version:
            return []
        if not self.log or v < self.log[0].record.version:
            return None
        return tail_from(self.log, v - self.log[0].record.version)

    def frame_of(self, logged: _Logged) -> str:
        if logged.frame is None:
            logged.frame = op_frame(self.c, self.d, logged.record)
        return logged.frame

    # ---- writes ------------------------------------------------------------------------------

    def submit(self, m: SubmitOp, sender: ActorRef | None) -> Any:
        if m.kind == "op" and m.v is None:
            return self.reject(sender, m.tag, ERR_MESSAGE_BADLY_FORMED, "an op needs 'v'")
        v = self.version if m.v is None else m.v
        if v > self.version:
            return self.reject(
                sender,
                m.tag,
                ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT,
                f"op version {v} is newer than the document's {self.version}",
            )
        since = self.logged_since(v)
        if since is None:
            return self.submit_after_read(m, sender, v)
        self.submit_with(m, sender, v, since)
        return None

    async def submit_after_read(self, m: SubmitOp, sender: ActorRef | None, v: int) -> None:
        """A client far behind: read the old ops from the store (the actor waits meanwhile)."""
        first = self.log[0].record.version if self.log else self.version
        older = await self.store.ops_since(self.c, self.d, v, first)
        since = [_Logged(r) for r in older]
        since.extend(self.log)
        if len(since) != self.version - v:
            self.reject(sender, m.tag, ERR_UNKNOWN_ERROR, f"ops since version {v} are missing")
            return
        self.submit_with(m, sender, v, since)

    def submit_with(
        self, m: SubmitOp, sender: ActorRef | None, v: int, since: list[_Logged]
    ) -> None:
        kind = m.kind
        op: Any = m.op
        if kind == "op":
            try:
                ot.check(op)
                op = ot.normalize(op)
            except OTError as exc:
                self.reject(sender, m.tag, ERR_OT_OP_BADLY_FORMED, str(exc))
                return
        past: list[Any] = []
        for logged in since:
            applied = logged.record
            if applied.src == m.src and applied.seq == m.seq:
                self.acknowledge_again(applied, sender, m.tag)
                return
            error = transform_error(kind, applied.kind)
            if error is not None:
                self.reject(sender, m.tag, *error)
                return
            if kind == "op" and applied.kind == "op":
                past.append(applied.op)
        if past:
            # all well formed: op was checked above, and every logged op was checked (or made by
            # transform) before it was committed
            op = ot.transform_past(op, past, "left", checked=True)
            self.transforms += len(past)
            if self.meters is not None:
                self.meters.doc_transforms.inc(len(past))
        self.apply_and_commit(m, sender, kind, op, since)

    def apply_and_commit(
        self, m: SubmitOp, sender: ActorRef | None, kind: str, op: Any, since: list[_Logged]
    ) -> None:
        if len(self.pending) >= self.config.max_pending:
            self.reject(sender, m.tag, ERR_OVERLOADED, "too many ops waiting to be committed")
            return
        undo: tuple[Any, ...]
        mentioned = None
        if kind == "op":
            if self.type is None or self.text is None:
                self.reject(sender, m.tag, ERR_DOC_DOES_NOT_EXIST, "Document does not exist")
                return
            text = self.text
            try:  # op was checked and normalized on arrival (or made by transform)
                inverse = ot.invert(ot.make_invertible(op, text, checked=True), checked=True)
                scan = None
                if self.config.mentions is not None:
                    scan = mentions.scan_op(op, text.slice, len(text))
                text.apply(op, checked=True)
            except OTError as exc:
                self.reject(sender, m.tag, ERR_OT_OP_NOT_APPLIED, str(exc))
                return
            if scan is not None:
                found = mentions.mentions_created(scan, text.slice, len(text))
                mentioned = found if found[0] else None
            undo = ("op", inverse)
        elif kind == "create":
            if self.type is not None:
                self.reject(sender, m.tag, ERR_DOC_ALREADY_CREATED, "Document already exists")
                return
            data = op.get("data") if isinstance(op, dict) else ""
            self.type, self.text = TEXT_URI, ot.TextBuffer(data if isinstance(data, str) else "")
            undo = ("create",)
        else:
            if self.type is None or self.text is None:
                self.reject(sender, m.tag, ERR_DOC_DOES_NOT_EXIST, "Document does not exist")
                return
            undo = ("del", self.type, str(self.text))
            self.type, self.text = None, None
        record = OpRecord(
            collection=self.c,
            doc=self.d,
            version=self.version,
            src=m.src,
            seq=m.seq,
            op=op,
            timestamp=self.config.now_ms(),
            kind=kind,  # type: ignore[arg-type]
            user=m.user,
        )
        try:
            future = self.committer.submit_nowait(record)
        except StoreBusy:
            self.revert(undo)
            self.reject(sender, m.tag, ERR_OVERLOADED, "the store is busy; try again")
            return
        except StoreError as exc:
            self.revert(undo)
            self.reject(sender, m.tag, ERR_UNKNOWN_ERROR, str(exc))
            return
        self.version += 1
        self.ops_applied += 1
        logged = _Logged(record)
        self.log.append(logged)
        missed = tuple([x.frame if x.frame is not None else self.frame_of(x) for x in since])
        self.pending.append(
            _Pending(
                logged,
                sender,
                m.tag,
                missed,
                undo,
                future,
                time.perf_counter(),
                mentioned=mentioned,
            )
        )
        version = record.version
        self.context.pipe_to_self(
            future,
            lambda result: _Committed(version, result.status == "duplicate"),
            lambda exc: _CommitFailed(version, repr(exc)),
            label="store commit",
        )

    def revert(self, undo: tuple[Any, ...]) -> None:
        if undo[0] == "op":
            assert self.text is not None
            self.text.apply(undo[1])
        elif undo[0] == "create":
            self.type, self.text = None, None
        else:
            self.type, self.text = undo[1], ot.TextBuffer(undo[2])

    def acknowledge_again(self, applied: OpRecord, sender: ActorRef | None, tag: int) -> None:
        """A resubmitted op: ack it again once (or as soon as) its first copy is committed."""
        if applied.version < self.committed:
            if sender is not None:
                ack = OpAcked(tag=tag, v=applied.version, src=applied.src, seq=applied.seq)
                _tell(sender, ack)
            if self.hub is not None:
                # the first copy's broadcast may have been lost with the node that committed it
                # (a failover): publish it again; subscribers ignore an op they already have
                publish = Publish(
                    c=self.c,
                    d=self.d,
                    v=applied.version,
                    src=applied.src,
                    frame=op_frame(self.c, self.d, applied),
                    author=sender.path if sender is not None else None,
                )
                _tell(self.hub, publish)
            return
        for p in self.pending:
            if p.logged.record.version == applied.version:
                if sender is not None:
                    p.again.append((sender, tag))
                return

    def reject(self, sender: ActorRef | None, tag: int, code: str, message: str) -> None:
        if self.meters is not None:
            self.meters.doc_ops_rejected.labels(code).inc()
        _tell(sender, DocError(tag=tag, code=code, message=message))

    def on_committed(self, version: int) -> None:
        for p in self.pending:
            if p.logged.record.version == version:
                p.done = True
                break
        while self.pending and self.pending[0].done:
            p = self.pending.popleft()
            record = p.logged.record
            self.committed = record.version + 1
            if self.meters is not None:
                self.meters.doc_ops_applied.inc()
                self.meters.doc_commit_seconds.observe(time.perf_counter() - p.arrived)
            via_hub = self.config.acks_via_hub and self.hub is not None
            answer = p.author is not None and p.tag is not None
            if answer and not via_hub:
                ack = OpAcked(
                    tag=p.tag or 0, v=record.version, src=record.src, seq=record.seq,
                    frames=p.missed,
                )  # fmt: skip
                _tell(p.author, ack)
            for ref, tag in p.again:
                _tell(ref, OpAcked(tag=tag, v=record.version, src=record.src, seq=record.seq))
            if self.hub is not None:
                frame = self.frame_of(p.logged)
                publish = Publish(
                    c=self.c,
                    d=self.d,
                    v=record.version,
                    src=record.src,
                    frame=frame,
                    wire=text_frame(frame.encode()),
                    author=p.author.path if p.author is not None else None,
                )
                if answer and via_hub:
                    publish = msgspec.structs.replace(
                        publish,
                        ack_to=p.author,
                        ack=OpAcked(
                            tag=p.tag or 0, v=record.version, src=record.src, seq=record.seq
                        ),
                        missed=p.missed,
                    )
                _tell(self.hub, publish)
            if p.mentioned is not None:
                names, excerpts = p.mentioned
                _tell(
                    self.config.mentions,
                    mentions.Mentioned(
                        collection=self.c,
                        doc=self.d,
                        version=record.version,
                        author=record.user,
                        names=names,
                        excerpts=excerpts,
                    ),
                )
        self._trim_log()
        if self.committed - self.snapshot_version >= self.config.snapshot_every:
            self.save_snapshot()

    def on_commit_failed(self, failure: _CommitFailed, *, reraise: bool = True) -> None:
        for p in self.pending:
            if p.author is not None and p.tag is not None:
                self.reject(
                    p.author,
                    p.tag,
                    "ERR_MAILSLOT_STORE_FAILED",
                    f"the op was not stored ({failure.error}); reload the document",
                )
        self.pending.clear()
        if not reraise:
            return
        raise StoreError(
            f"commit of {self.c}/{self.d} at version {failure.version} failed: {failure.error}",
            doc_id=self.d,
        )

    def save_snapshot(self) -> None:
        if self.snapshot_in_flight:
            return
        type_uri, data = self.committed_state()
        snapshot = Snapshot(
            collection=self.c,
            doc=self.d,
            version=self.committed,
            type=type_uri,
            data=data,
            timestamp=self.config.now_ms(),
        )
        self.snapshot_in_flight = True
        version = self.committed

        def failed(exc: BaseException) -> _SnapshotSaved:
            log.warning("%s/%s: snapshot at %d failed: %r", self.c, self.d, version, exc)
            return _SnapshotSaved(self.snapshot_version)

        self.context.pipe_to_self(
            self.store.save_snapshot(snapshot), lambda _: _SnapshotSaved(version), failed
        )

    def _trim_log(self) -> None:
        log_ = self.log
        limit = self.config.log_tail
        while len(log_) > limit and log_[0].record.version < self.committed:
            log_.popleft()

    def on_idle(self) -> None:
        """Idle: write a snapshot if the log has moved on, then ask the manager to stop us."""
        if self.pending or self.manager is None:
            return
        if self.committed > self.snapshot_version:
            self.passivate_after_snapshot = True
            self.save_snapshot()
            return
        self.manager.tell(Passivate(self.context.self.name))

    def statistics(self) -> DocumentStatistics:
        return DocumentStatistics(
            collection=self.c,
            doc=self.d,
            version=self.version,
            committed_version=self.committed,
            pending=len(self.pending),
            length=len(self.text) if self.text is not None else 0,
            ops_applied=self.ops_applied,
            transforms=self.transforms,
        )


def transform_error(kind: str, applied: str) -> tuple[str, str] | None:
    """ShareDB's rules for an op meeting an already applied op of another kind."""
    if applied == "del":
        if kind in ("create", "op"):
            return (ERR_DOC_WAS_DELETED, "Document was deleted")
        return None
    if applied == "create" and kind in ("op", "create", "del"):
        return (ERR_DOC_ALREADY_CREATED, "Document was created remotely")
    if applied == "op" and kind == "create":
        return (ERR_DOC_ALREADY_CREATED, "Document was created remotely")
    return None


def _tell(ref: ActorRef | None, message: Any) -> None:
    """Tell without failing the document when a recipient is overwhelmed (it is dropped)."""
    if ref is None:
        return
    try:
        ref.tell(message)
    except MailboxFull:
        log.warning("%s cannot take %s: its mailbox is full", ref, type(message).__name__)


# ------------------------------------------------------------------------------------- manager


def child_name(c: str, d: str) -> str:
    """The actor name for ``c/d`` (collection and id quoted, so any id makes a valid name)."""
    return f"{quote(c, safe='')}:{quote(d, safe='')}"


Routed = SubscribeDoc | UnsubscribeDoc | SubmitOp | SnapshotAt


class DocumentManager(Actor):
    """Routes requests to document actors, creating each on first use (one per document).

    Passivation: a document actor that was idle asks to stop; messages for it that arrive while
    it stops wait here, in order, and go to its next incarnation.
    """

    supervisor_strategy = SupervisorStrategy(
        directive=Directive.RESTART,
        max_restarts=5,
        within=60.0,
        min_backoff=0.05,
        max_backoff=2.0,
        exhausted=Directive.STOP,
    )

    def __init__(
        self,
        *,
        store: Store,
        committer: GroupCommitter,
        hub: ActorRef | None,
        config: DocumentConfig | None = None,
    ) -> None:
        self.store = store
        self.committer = committer
        self.hub = hub
        self.config = config or DocumentConfig()
        self.capacity = self.config.mailbox_capacity
        self.held: dict[str, list[tuple[Any, ActorRef | None]]] = {}
        self.docs_started = 0

    def receive(self, message: Any) -> None:
        if isinstance(message, Routed):
            self.route(message, self.context.sender)
        elif isinstance(message, Passivate):
            self.passivate(message.key)
        elif isinstance(message, Terminated):
            self.terminated(message.actor)
        else:
            self.context.unhandled(message)

    def route(self, message: Routed, sender: ActorRef | None) -> None:
        name = child_name(message.c, message.d)
        held = self.held.get(name)
        if held is not None:
            held.append((message, sender))
            return
        child = self.context.child(name)
        if child is None:
            try:
                child = self.start(message.c, message.d, name)
            except InvalidActorName:
                # the previous actor of this document is still stopping (its supervisor gave
                # up on it): hold the message for the next incarnation
                self.held[name] = [(message, sender)]
                return
        try:
            child.tell(message, sender)
        except MailboxFull as exc:
            tag = getattr(message, "tag", None)
            if sender is not None and tag is not None:
                _tell(sender, DocError(tag=tag, code=ERR_OVERLOADED, message=str(exc)))

    def start(self, c: str, d: str, name: str) -> ActorRef:
        me = self.context.self
        ref = self.context.spawn(
            lambda: DocumentActor(
                c,
                d,
                store=self.store,
                committer=self.committer,
                hub=self.hub,
                manager=me,
                config=self.config,
            ),
            name=name,
            mailbox_capacity=self.capacity,
        )
        self.context.watch(ref)
        self.docs_started += 1
        return ref

    def passivate(self, name: str) -> None:
        child = self.context.child(name)
        if child is None or name in self.held:
            return
        self.held[name] = []
        self.context.stop(child, drain=True)

    def terminated(self, ref: ActorRef) -> None:
        held = self.held.pop(ref.name, None)
        if not held:
            return
        for message, sender in held:
            self.route(message, sender)

    def documents_open(self) -> int:
        return len(self.context.children)
