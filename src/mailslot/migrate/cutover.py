"""The cutover: which engine serves each document, switched at run time, with shadow comparison.

Theory of operation
-------------------
A :class:`CutoverRouter` actor stands where the document manager stands: the gateway's sessions
(and the REST API) send it every document request, and it forwards each to the actor engine (a
:class:`~mailslot.collab.document.DocumentManager`, its child) or to the old engine
(:class:`~mailslot.legacy.LegacyEngine`), as :func:`~mailslot.migrate.flags.evaluate` decides for
the document (and its owner, the user who created it, when the router saw the create). Both engines
share the store, the group committer and the hub.

Every request is forwarded with a tag of the router's own, so every reply comes back through the
router, which restores the session's tag and passes it on. That is what lets the router know, per
document, how many requests are in flight on which engine, and measure each engine's latency and
errors on real traffic.

Moving a document. When the flags change (:class:`SetFlags`, ``PUT /api/cutover``, ``mailslot
cutover set``), every document the router knows is evaluated again. A document whose engine changes
is *moving*: new requests for it are held, in order, until its in-flight requests have been answered
(an op is answered only once it is durable, so the store then holds everything the old engine
accepted); then both engines forget their cached copy (the actor engine's document actor is
passivated, the old engine's entry evicted), and the held requests go, in order, to the new engine,
which loads the latest committed state from the store. No op is lost or reordered, and none is
split across engines. The kill switch is one such change, for every document at once.

Broadcasts: the old engine publishes to the hub itself. The actor engine's manager is given the
router as its hub: its document actors name the router as the author of every op (the router sent
it), so the router puts the session back as the author (learnt from the ack, which a document
actor sends just before it publishes) and forwards the publication to the hub.

Shadow mode (``FlagConfig.shadow``). After the serving engine acknowledges an op, the router sends
a copy (the op as the client sent it, against the version it was made on) to a *shadow* instance of
the other engine, which runs on its own in-memory store and committer: it never writes the serving
engine's rows. A document's shadow is first seeded by copying the serving store's op log up to the
op's version (a read). The shadow gets one op at a time per document, in version order, so it
transforms each op past the same ops the serving engine did; its ack must name the same version,
and every ``compare_every`` ops the router asks both engines for the document at that version and
compares type and text. Matches, mismatches, shadow errors and latency are counted; a document whose
shadow diverged is no longer shadowed. The shadow is off the request path: nobody waits for it, its
queue per document is bounded (past it, the shadow is reseeded from the store), and it only costs
the serving engine what running a second engine in the same process costs.

Stalls: when an engine has had a request unanswered for ``stall_after`` seconds and has answered
nothing else meanwhile, that counts once as a stall of the engine (the old engine's planted
deadlock shows up here; the actor engine has no lock to deadlock on). A merely slow engine goes on
answering, and is not counted.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from mailslot.collab.document import (
    DocumentConfig,
    DocumentManager,
    Passivate,
    Publish,
    child_name,
)
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
from mailslot.legacy import LegacyConfig, LegacyEngine, LegacyStatistics
from mailslot.meters import LATENCY_BUCKETS, HistogramData, Meters, quantile
from mailslot.migrate.flags import Engine, FlagConfig, evaluate
from mailslot.runtime import Actor, ActorRef
from mailslot.store import GroupCommitter, Store
from mailslot.store.sqlite import MEMORY, SqliteStore

__all__ = [
    "CutoverConfig",
    "CutoverRouter",
    "CutoverStatistics",
    "EngineStatistics",
    "GetCutover",
    "SetFlags",
    "ShadowStatistics",
    "start_cutover",
]

log = logging.getLogger("mailslot.migrate.cutover")

_Routed = SubscribeDoc | UnsubscribeDoc | SubmitOp | SnapshotAt
_Key = tuple[str, str]


class SetFlags(msgspec.Struct, frozen=True):
    """Replace the flag configuration (reply: :class:`CutoverStatistics`)."""

    config: FlagConfig


class GetCutover(msgspec.Struct, frozen=True):
    """Ask for the :class:`CutoverStatistics`."""


class _Tick(msgspec.Struct, frozen=True):
    pass


class _Seeded(msgspec.Struct, frozen=True):
    key: tuple[str, str]
    engine: str
    version: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CutoverConfig:
    """Tuning of the router.

    Args:
        stall_after: seconds an engine may answer nothing while a request waits before it counts
            as stalled.
        compare_every: compare the texts of a shadowed document every this many ops.
        shadow_queue: op copies waiting per document for its shadow before it is reseeded.
        max_routes: documents remembered (idle ones are forgotten past this; they evaluate the
            same way again).
        shadow_legacy: the configuration of the old engine's shadow instance.
        shadow: start the shadow instances (off spares their threads and stores when shadow
            mode will not be used, as in benchmarks).
    """

    stall_after: float = 2.0
    compare_every: int = 16
    shadow_queue: int = 1000
    max_routes: int = 100_000
    shadow_legacy: LegacyConfig = field(default_factory=lambda: LegacyConfig(workers=4))
    shadow: bool = True


class EngineStatistics(msgspec.Struct, frozen=True):
    """One engine's traffic as the router saw it."""

    documents: int
    requests: int
    errors: int
    stalls: int
    p50_ms: float | None
    p99_ms: float | None


class ShadowStatistics(msgspec.Struct, frozen=True):
    """What the shadow comparison found."""

    ops: int
    matched: int
    mismatched: int
    errors: int
    texts_compared: int
    texts_mismatched: int
    reseeded: int
    dropped: int
    diverged_documents: int
    p50_ms: float | None
    p99_ms: float | None


class CutoverStatistics(msgspec.Struct, frozen=True):
    """The flags, the documents and what each engine did."""

    flags: FlagConfig
    documents: int
    moving: int
    held: int
    moves: int
    engines: dict[str, EngineStatistics]
    shadow: ShadowStatistics
    legacy: LegacyStatistics | None = None


class _Counter:
    __slots__ = ("errors", "last_done", "latency", "requests", "stalls", "stuck")

    def __init__(self) -> None:
        self.last_done = time.perf_counter()
        self.stuck = False
        self.requests = 0
        self.errors = 0
        self.stalls = 0
        self.latency = HistogramData(LATENCY_BUCKETS)

    def p(self, q: float) -> float | None:
        value = quantile(q, self.latency.bounds, self.latency.counts)
        return None if value is None else round(value * 1000, 3)


@dataclass(slots=True)
class _Route:
    engine: Engine
    inflight: int = 0
    moving_to: Engine | None = None
    held: deque[tuple[Any, ActorRef | None]] = field(default_factory=deque)


@dataclass(slots=True)
class _Pending:
    purpose: str  # serve, shadow, compare
    engine: Engine
    key: _Key
    sender: ActorRef | None
    tag: int
    request: Any
    t0: float
    stalled: bool = False
    expect: int = 0


@dataclass(slots=True)
class _Shadow:
    engine: Engine
    next: int | None = None
    seeding: bool = False
    busy: bool = False
    diverged: bool = False
    count: int = 0
    queue: deque[tuple[int, SubmitOp]] = field(default_factory=deque)


def _other(engine: Engine) -> Engine:
    return "legacy" if engine == "actor" else "actor"


class CutoverRouter(Actor):
    """Routes document requests to the engine the flags choose (see the module docstring).

    Args:
        store: the store both serving engines share (the shadow only reads it).
        committer: the serving group committer (for the actor engine's documents).
        hub: the node's hub.
        legacy: the old engine, started.
        flags: the flags at start.
        documents: the actor engine's document configuration.
        config: the router's own tuning.
        shadow: whether shadow instances are started (off saves their threads in benchmarks).
        meters: where per-engine requests, errors, latency, stalls, moves and the shadow's
            outcomes are reported (``mailslot_cutover_*``).
    """

    def __init__(
        self,
        *,
        store: Store,
        committer: GroupCommitter,
        hub: ActorRef | None,
        legacy: LegacyEngine,
        flags: FlagConfig,
        documents: DocumentConfig | None = None,
        config: CutoverConfig | None = None,
        shadow: bool = True,
        meters: Meters | None = None,
    ) -> None:
        self.meters = meters
        self.store = store
        self.committer = committer
        self.hub = hub
        self.legacy = legacy
        self.flags = flags
        self.doc_config = documents or DocumentConfig()
        self.config = config or CutoverConfig()
        self.shadow_on = shadow
        self.routes: dict[_Key, _Route] = {}
        self.owners: dict[_Key, str] = {}
        self.pending: dict[int, _Pending] = {}
        self.authors: dict[tuple[str, str, int], str] = {}
        self.shadows: dict[_Key, _Shadow] = {}
        self.compares: dict[int, list[DocSnapshot | DocError | None]] = {}
        self.tags = itertools.count(1)
        self.moves = 0
        self.stats: dict[str, _Counter] = {"actor": _Counter(), "legacy": _Counter()}
        self.shadow_stats = _Counter()
        self.shadow_counts = dict.fromkeys(
            ("ops", "matched", "mismatched", "texts", "texts_mismatched", "reseeded", "dropped"),
            0,
        )
        self.documents: ActorRef | None = None
        self.shadow_documents: ActorRef | None = None
        self.shadow_legacy: LegacyEngine | None = None
        self.shadow_stores: dict[str, Store] = {}
        self.shadow_committers: list[GroupCommitter] = []

    # ---- lifecycle ---------------------------------------------------------------------------

    async def started(self) -> None:
        me = self.context.self
        self.documents = self.context.spawn(
            lambda: DocumentManager(
                store=self.store, committer=self.committer, hub=me, config=self.doc_config
            ),
            name="docs",
            mailbox_capacity=100_000,
        )
        if self.shadow_on:
            await self._start_shadows()
        self.context.start_periodic_timer("tick", _Tick(), max(0.05, self.config.stall_after / 4))

    async def _start_shadows(self) -> None:
        for engine in ("actor", "legacy"):
            store = SqliteStore(MEMORY)
            await store.open()
            committer = GroupCommitter(store)
            await committer.open()
            self.shadow_stores[engine] = store
            self.shadow_committers.append(committer)
            if engine == "actor":
                self.shadow_documents = self.context.spawn(
                    lambda s=store, c=committer: DocumentManager(  # type: ignore[misc]
                        store=s, committer=c, hub=None, config=DocumentConfig()
                    ),
                    name="shadow-docs",
                )
            else:
                self.shadow_legacy = LegacyEngine(
                    store=store, committer=committer, config=self.config.shadow_legacy
                )
                self.shadow_legacy.start()

    async def stopping(self) -> None:
        if self.shadow_legacy is not None:
            await self.shadow_legacy.stop()
        for committer in self.shadow_committers:
            await committer.close()
        for store in self.shadow_stores.values():
            await store.close()

    # ---- dispatch ----------------------------------------------------------------------------

    def receive(self, message: Any) -> None:
        if isinstance(message, _Routed):
            self.route(message, self.context.sender)
        elif isinstance(message, OpAcked | DocError | DocSnapshot | DocOps):
            self.complete(message)
        elif isinstance(message, Publish):
            self.republish(message)
        elif isinstance(message, SetFlags):
            self.set_flags(message.config)
            self.context.reply(self.statistics())
        elif isinstance(message, GetCutover):
            self.context.reply(self.statistics())
        elif isinstance(message, _Tick):
            self.scan_stalls()
        elif isinstance(message, _Seeded):
            self.seeded(message)
        else:
            self.context.unhandled(message)

    def route(self, m: _Routed, sender: ActorRef | None) -> None:
        key = (m.c, m.d)
        if isinstance(m, SubmitOp) and m.kind == "create" and m.user is not None:
            self.owners.setdefault(key, m.user)
        r = self.routes.get(key)
        if r is None:
            if len(self.routes) >= self.config.max_routes:
                self.forget_idle()
            r = self.routes[key] = _Route(evaluate(self.flags, m.d, self.owners.get(key)).engine)
        if r.moving_to is not None:
            r.held.append((m, sender))
            return
        self.forward(key, r, m, sender)

    def forward(self, key: _Key, r: _Route, m: _Routed, sender: ActorRef | None) -> None:
        if isinstance(m, UnsubscribeDoc):
            self.send(r.engine, m, sender, serving=True)
            return
        tag = next(self.tags)
        self.pending[tag] = _Pending("serve", r.engine, key, sender, m.tag, m, time.perf_counter())
        r.inflight += 1
        self.stats[r.engine].requests += 1
        if self.meters is not None:
            self.meters.cutover_requests.labels(r.engine).inc()
        self.send(r.engine, msgspec.structs.replace(m, tag=tag), sender, serving=True)

    def send(self, engine: Engine, m: Any, sender: ActorRef | None, *, serving: bool) -> None:
        """Hand ``m`` (tagged by the router) to a serving or shadow engine."""
        me = self.context.self
        if engine == "actor":
            target = self.documents if serving else self.shadow_documents
            assert target is not None
            target.tell(m, me)
            return
        legacy = self.legacy if serving else self.shadow_legacy
        assert legacy is not None
        author = sender.path if sender is not None else None
        legacy.submit(m, me.tell, author=author)

    def complete(self, reply: Any) -> None:
        p = self.pending.pop(reply.tag, None)
        if p is None:
            return
        elapsed = time.perf_counter() - p.t0
        if p.purpose == "shadow":
            self.shadow_stats.latency.observe(elapsed)
            if self.meters is not None:
                self.meters.cutover_shadow_seconds.observe(elapsed)
            self.shadow_done(p, reply)
            return
        if p.purpose.startswith("compare"):
            self.compared(p, reply)
        else:
            counter = self.stats[p.engine]
            counter.latency.observe(elapsed)
            counter.last_done = p.t0 + elapsed
            counter.stuck = False
            if isinstance(reply, DocError):
                counter.errors += 1
            if self.meters is not None:
                self.meters.cutover_request_seconds.labels(p.engine).observe(elapsed)
                if isinstance(reply, DocError):
                    self.meters.cutover_errors.labels(p.engine).inc()
            if p.sender is not None:
                p.sender.tell(msgspec.structs.replace(reply, tag=p.tag))
            if isinstance(reply, OpAcked) and isinstance(p.request, SubmitOp):
                if p.engine == "actor" and p.sender is not None:
                    if len(self.authors) > 10_000:
                        self.authors.clear()
                    self.authors.setdefault((*p.key, reply.v), p.sender.path)
                if self.flags.shadow and self.shadow_on:
                    self.shadow_copy(p.key, p.engine, reply.v, p.request)
        if p.purpose in ("serve", "compare-serve"):
            r = self.routes.get(p.key)
            if r is not None:
                r.inflight -= 1
                if r.moving_to is not None and r.inflight == 0:
                    self.finish_move(p.key, r)

    def republish(self, p: Publish) -> None:
        """A publication of the actor engine: put the session back as its author."""
        author = self.authors.pop((p.c, p.d, p.v), None)
        if self.hub is not None:
            self.hub.tell(msgspec.structs.replace(p, author=author))

    # ---- flags and moves ---------------------------------------------------------------------

    def set_flags(self, flags: FlagConfig) -> None:
        self.flags = flags
        for key, r in self.routes.items():
            target = evaluate(flags, key[1], self.owners.get(key)).engine
            if r.moving_to is not None:
                r.moving_to = target
                if target == r.engine:  # moved back before it left: nothing to do
                    r.moving_to = None
                    self.release(key, r)
            elif target != r.engine:
                r.moving_to = target
                if r.inflight == 0:
                    self.finish_move(key, r)
        if not flags.shadow:
            self.shadows.clear()

    def finish_move(self, key: _Key, r: _Route) -> None:
        assert r.moving_to is not None
        old, r.engine, r.moving_to = r.engine, r.moving_to, None
        self.evict(old, key, serving=True)
        self.evict(r.engine, key, serving=True)
        self.shadows.pop(key, None)
        self.moves += 1
        if self.meters is not None:
            self.meters.cutover_moves.inc()
        log.info("%s/%s moved from the %s engine to the %s engine", *key, old, r.engine)
        self.release(key, r)

    def release(self, key: _Key, r: _Route) -> None:
        while r.held and r.moving_to is None:
            m, sender = r.held.popleft()
            self.forward(key, r, m, sender)

    def evict(self, engine: Engine, key: _Key, *, serving: bool) -> None:
        if engine == "actor":
            target = self.documents if serving else self.shadow_documents
            if target is not None:
                target.tell(Passivate(child_name(*key)))
        else:
            legacy = self.legacy if serving else self.shadow_legacy
            if legacy is not None:
                legacy.evict(*key)

    def forget_idle(self) -> None:
        idle = [k for k, r in self.routes.items() if r.inflight == 0 and r.moving_to is None]
        for k in idle[: max(1, len(idle) // 2)]:
            del self.routes[k]

    def scan_stalls(self) -> None:
        """Count a stall of an engine that has had a request waiting ``stall_after`` seconds and
        has answered none in that time (a slow engine answers others; a stuck one does not)."""
        now = time.perf_counter()
        limit = self.config.stall_after
        oldest: dict[str, float] = {}
        for p in self.pending.values():
            if p.purpose == "serve" and p.t0 < oldest.get(p.engine, now):
                oldest[p.engine] = p.t0
        for engine, t0 in oldest.items():
            counter = self.stats[engine]
            if now - t0 >= limit and now - counter.last_done >= limit and not counter.stuck:
                counter.stuck = True
                counter.stalls += 1
                if self.meters is not None:
                    self.meters.cutover_stalls.labels(engine).inc()
                log.warning("the %s engine answered nothing for %.1fs", engine, now - t0)

    # ---- shadow ------------------------------------------------------------------------------

    def count(self, outcome: str, n: int = 1) -> None:
        """A shadow outcome: in the statistics and, as ``outcome``, in the metrics."""
        self.shadow_counts[outcome] += n
        if self.meters is not None and outcome != "ops":
            label = {"texts_mismatched": "text_mismatched"}.get(outcome, outcome)
            self.meters.cutover_shadow.labels(label).inc(n)

    def shadow_copy(self, key: _Key, serving: Engine, version: int, op: SubmitOp) -> None:
        sh = self.shadows.get(key)
        if sh is None or sh.engine != _other(serving):
            sh = self.shadows[key] = _Shadow(_other(serving))
        if sh.diverged:
            return
        if len(sh.queue) >= self.config.shadow_queue:
            self.count("dropped", len(sh.queue))
            sh.queue.clear()
            sh.next = None  # reseed from the store: the dropped ops are copied, not replayed
        sh.queue.append((version, op))
        self.pump(key, sh)

    def pump(self, key: _Key, sh: _Shadow) -> None:
        while sh.queue and not sh.busy and not sh.seeding and not sh.diverged:
            version, op = sh.queue[0]
            if sh.next is None or version > sh.next:
                self.seed(key, sh, version)
                return
            sh.queue.popleft()
            if version < sh.next:
                continue  # acknowledged again (a resubmission): the shadow has it
            tag = next(self.tags)
            self.pending[tag] = _Pending(
                "shadow", sh.engine, key, None, 0, op, time.perf_counter(), expect=version
            )
            sh.busy = True
            self.count("ops")
            self.send(sh.engine, msgspec.structs.replace(op, tag=tag), None, serving=False)

    def seed(self, key: _Key, sh: _Shadow, version: int) -> None:
        sh.seeding = True
        self.count("reseeded")
        self.evict(sh.engine, key, serving=False)
        engine = sh.engine

        async def copy() -> _Seeded:
            store = self.shadow_stores[engine]
            info = await store.document(*key)
            head = info.version if info is not None else 0
            if head > version:
                return _Seeded(key, engine, version, f"shadow at {head}, serving at {version}")
            ops = await self.store.ops_since(*key, head, version)
            if len(ops) != version - head:
                return _Seeded(key, engine, version, "the serving log has a gap")
            await store.commit(ops)
            return _Seeded(key, engine, version)

        self.context.pipe_to_self(
            copy(), lambda s: s, lambda exc: _Seeded(key, engine, version, repr(exc))
        )

    def seeded(self, s: _Seeded) -> None:
        sh = self.shadows.get(s.key)
        if sh is None or sh.engine != s.engine:
            return
        sh.seeding = False
        if s.error is not None:
            log.warning("shadow of %s/%s cannot be seeded: %s", *s.key, s.error)
            sh.diverged = True
            return
        sh.next = s.version
        self.pump(s.key, sh)

    def shadow_done(self, p: _Pending, reply: Any) -> None:
        sh = self.shadows.get(p.key)
        if sh is None or sh.engine != p.engine:
            return
        sh.busy = False
        if isinstance(reply, OpAcked) and reply.v == p.expect:
            self.count("matched")
            sh.next = p.expect + 1
            sh.count += 1
            if sh.count % self.config.compare_every == 0:
                self.compare_text(p.key, sh, p.expect + 1)
        else:
            self.count("mismatched")
            if isinstance(reply, DocError):
                self.shadow_stats.errors += 1
            what = reply.code if isinstance(reply, DocError) else f"version {reply.v}"
            log.warning(
                "shadow %s engine disagrees on %s/%s: serving committed at %d, shadow: %s",
                p.engine, *p.key, p.expect, what,
            )  # fmt: skip
            sh.diverged = True
        self.pump(p.key, sh)

    def compare_text(self, key: _Key, sh: _Shadow, version: int) -> None:
        r = self.routes.get(key)
        if r is None or r.moving_to is not None or r.engine == sh.engine:
            return
        cid = next(self.tags)
        self.compares[cid] = [None, None]
        for slot, engine, serving in ((0, r.engine, True), (1, sh.engine, False)):
            tag = next(self.tags)
            request = SnapshotAt(tag=tag, c=key[0], d=key[1], version=version)
            self.pending[tag] = _Pending(
                "compare-serve" if serving else "compare",
                engine, key, None, cid, slot, time.perf_counter(),
            )  # fmt: skip
            if serving:
                r.inflight += 1
            self.send(engine, request, None, serving=serving)

    def compared(self, p: _Pending, reply: Any) -> None:
        both = self.compares.get(p.tag)
        if both is None:
            return
        both[p.request] = reply
        if both[0] is None or both[1] is None:
            return
        del self.compares[p.tag]
        self.shadow_counts["texts"] += 1
        if self.compare_ok(both):
            if self.meters is not None:
                self.meters.cutover_shadow.labels("text_matched").inc()
        else:
            a, b = both
            self.count("texts_mismatched")
            log.warning("shadow text differs for %s/%s: %r vs %r", *p.key, a, b)
            sh = self.shadows.get(p.key)
            if sh is not None:
                sh.diverged = True

    @staticmethod
    def compare_ok(both: list[DocSnapshot | DocError | None]) -> bool:
        a, b = both
        if not isinstance(a, DocSnapshot) or not isinstance(b, DocSnapshot):
            return False
        return (a.v, a.type, a.data) == (b.v, b.type, b.data)

    # ---- reading -----------------------------------------------------------------------------

    def statistics(self) -> CutoverStatistics:
        per_engine: dict[str, int] = {"actor": 0, "legacy": 0}
        for r in self.routes.values():
            per_engine[r.engine] += 1
        engines = {
            name: EngineStatistics(
                documents=per_engine[name],
                requests=c.requests,
                errors=c.errors,
                stalls=c.stalls,
                p50_ms=c.p(0.5),
                p99_ms=c.p(0.99),
            )
            for name, c in self.stats.items()
        }
        sc = self.shadow_counts
        shadow = ShadowStatistics(
            ops=sc["ops"],
            matched=sc["matched"],
            mismatched=sc["mismatched"],
            errors=self.shadow_stats.errors,
            texts_compared=sc["texts"],
            texts_mismatched=sc["texts_mismatched"],
            reseeded=sc["reseeded"],
            dropped=sc["dropped"],
            diverged_documents=sum(1 for s in self.shadows.values() if s.diverged),
            p50_ms=self.shadow_stats.p(0.5),
            p99_ms=self.shadow_stats.p(0.99),
        )
        return CutoverStatistics(
            flags=self.flags,
            documents=len(self.routes),
            moving=sum(1 for r in self.routes.values() if r.moving_to is not None),
            held=sum(len(r.held) for r in self.routes.values()),
            moves=self.moves,
            engines=engines,
            shadow=shadow,
            legacy=self.legacy.statistics(),
        )


def start_cutover(node: Any, hub: ActorRef) -> tuple[LegacyEngine, ActorRef]:
    """Start the old engine and the router for a :class:`~mailslot.server.Node` (its wiring).

    ``node.config.engine`` is ``legacy`` or ``cutover``; without ``flags`` both start with every
    document on the old engine (the flags' default), which is where a migration starts.
    """
    config = node.config
    legacy = LegacyEngine(
        store=node.store,
        committer=node.committer,
        publish=hub.tell,
        config=config.legacy or LegacyConfig(),
    )
    legacy.start()
    flags = config.flags or FlagConfig()
    cutover = config.cutover or CutoverConfig()
    router = node.system.spawn(
        lambda: CutoverRouter(
            store=node.store,
            committer=node.committer,
            hub=hub,
            legacy=legacy,
            flags=flags,
            documents=config.documents,
            config=cutover,
            shadow=cutover.shadow,
            meters=config.documents.meters,
        ),
        name="cutover",
        mailbox_capacity=100_000,
    )
    return legacy, router
