"""``mailslot serve``: one node of the collaboration service.

A :class:`Node` wires the layers together: the actor system, the store and its group committer,
the hub, the document manager, and the gateway. :func:`build_app` puts a Starlette application in
front of it (the WebSocket endpoint at ``/ws`` and the REST API under ``/api``), and :func:`serve`
runs it under uvicorn until SIGINT/SIGTERM, then shuts down in order: stop accepting, close the
sessions, let every document drain and commit, close the committer and the store.

REST (JSON):

- ``GET /healthz``: liveness and a few counts;
- ``GET /api/docs``: the documents, with their versions;
- ``POST /api/docs`` ``{"id": "...", "text": "..."}``: create a text document (id optional);
- ``GET /api/docs/{id}``: its latest snapshot, or ``?v=N`` for the snapshot at version N;
- ``GET /api/docs/{id}/history?limit=50&offset=0``: its ops, newest first, with versions and
  timestamps;
- ``GET /metrics`` (Prometheus), ``GET /dashboard`` (a live page) and ``/dashboard/data``;
- users, sharing, the inbox and the browser editor at ``/``: see :mod:`mailslot.accounts`. With a
  token, a created document is owned by its creator and document reads follow the access rules;
  with dev login off, listing and creating need a token.

Every bad request gets a 4xx answer naming what was wrong; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import re
import secrets
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from mailslot.accounts import Accounts, load_secret
from mailslot.collab.document import DocumentConfig, DocumentManager
from mailslot.collab.gateway import (
    Gateway,
    GatewayConfig,
    GatewayStatistics,
    GatewayStats,
    WriteBatcher,
    serve_websocket,
)
from mailslot.collab.hub import Hub
from mailslot.collab.notify import NotificationManager, NotifyConfig
from mailslot.collab.peers import Peers
from mailslot.collab.presence import PresenceConfig, PresenceManager
from mailslot.collab.protocol.docs import DocError, DocSnapshot, OpAcked, SnapshotAt, SubmitOp
from mailslot.errors import AskTimeout, ConfigError, MailslotError
from mailslot.observe import Observability, observability_from_env
from mailslot.runtime import ActorRef, ActorSystem
from mailslot.store import GroupCommitter, Store, open_store
from mailslot.store.directory import Directory

if TYPE_CHECKING:
    from mailslot.legacy import LegacyConfig, LegacyEngine
    from mailslot.migrate.cutover import CutoverConfig
    from mailslot.migrate.flags import FlagConfig

__all__ = [
    "UVICORN_SETTINGS",
    "Node",
    "NodeConfig",
    "RunningServer",
    "build_app",
    "serve",
    "start_server",
    "tune_gc",
]

log = logging.getLogger("mailslot.server")

DEFAULT_COLLECTION = "docs"
_ID = re.compile(r"^[A-Za-z0-9._~:@+=-]{1,200}$")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What ``mailslot serve`` is told."""

    host: str = "127.0.0.1"
    port: int = 8000
    db: str = "sqlite:///./data/mailslot.db"
    documents: DocumentConfig = field(default_factory=DocumentConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    ws_max_size: int = 1024 * 1024
    ask_timeout: float = 10.0
    #: write frames straight to the sockets (False: through ASGI, one writer task per socket)
    direct_writes: bool = True
    # cluster mode (mailslot.collab.cluster): None runs a single node with no broker
    broker: str | None = None
    node_id: str | None = None
    cluster_prefix: str = "mailslot"
    shards: int = 64
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    #: name-only sign-in and anonymous sockets (the embedded default; ``--no-dev-login``: off)
    dev_login: bool = True
    #: signs session tokens (else MAILSLOT_SECRET, else ``secret.key`` beside the SQLite file)
    secret: str | None = None
    #: the transport heartbeat: a WebSocket ping every this many seconds...
    ws_ping_interval: float = 20.0
    #: ...and the socket closes if its pong takes longer than this (presence then leaves)
    ws_ping_timeout: float = 20.0
    engine: str = "actor"
    """``actor`` (the default), or ``legacy``/``cutover``: both engines behind the cutover router,
    starting from ``flags`` (``legacy``: everything on the old engine unless ``flags`` say else)."""
    flags: FlagConfig | None = None
    """The cutover's flags at start."""
    legacy: LegacyConfig | None = None
    """The old engine's configuration."""
    cutover: CutoverConfig | None = None
    """The cutover router's configuration."""


class Node:
    """The layers of one node, started and stopped in order.

    Observability is always on: metrics (cheap, sampled timing) for ``/metrics`` and
    ``/dashboard``; tracing when the ``OTEL_*`` environment variables ask for it.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        store: Store | None = None,
        observability: Observability | None = None,
    ) -> None:
        self.obs = observability or observability_from_env()
        meters = self.obs.meters
        self.config = dataclasses.replace(
            config,
            documents=dataclasses.replace(config.documents, meters=meters),
            gateway=dataclasses.replace(config.gateway, meters=meters),
            presence=dataclasses.replace(config.presence, meters=meters),
            notify=dataclasses.replace(config.notify, meters=meters),
        )
        self.system = ActorSystem("mailslot", instrumentation=self.obs.instrumentation)
        self.store = store or open_store(config.db)
        self.committer = GroupCommitter(self.store, meters=meters)
        self.hub: ActorRef | None = None
        self.manager: ActorRef | None = None
        self.gateway: ActorRef | None = None
        self.batcher = WriteBatcher()
        self.cluster: Any = None  # a mailslot.cluster.ClusterNode in cluster mode
        self.presence: ActorRef | None = None
        self.notifier: ActorRef | None = None
        self.accounts: Accounts | None = None
        self.router: ActorRef | None = None
        self.legacy: LegacyEngine | None = None
        self._started = False

    async def start(self) -> None:
        await self.store.open()
        await self.committer.open()
        self.system.start()
        self.hub = self.system.spawn(Hub, name="hub")
        hub = self.hub
        if self.config.broker is not None:
            from mailslot.collab.cluster import join_cluster

            await join_cluster(self)  # sets notifier, manager, presence and gateway
            self._start_accounts()
            self._started = True
            return
        notifier = self.start_notifier(None)
        documents = self.config.documents
        if self.config.engine == "actor":
            self.manager = self.system.spawn(
                lambda: DocumentManager(
                    store=self.store, committer=self.committer, hub=hub, config=documents
                ),
                name="docs",
                mailbox_capacity=100_000,
            )
        else:
            from mailslot.migrate.cutover import start_cutover

            self.legacy, self.router = start_cutover(self, hub)
            self.manager = self.router
        manager = self.manager
        self.presence = self.system.spawn(
            lambda: PresenceManager(hub=hub, documents=manager, config=self.config.presence),
            name="presence",
            mailbox_capacity=self.config.presence.mailbox,
        )
        presence = self.presence
        self.gateway = self.system.spawn(
            lambda: Gateway(
                manager=manager,
                hub=hub,
                presence=presence,
                notifier=notifier,
                config=self.config.gateway,
            ),
            name="gateway",
        )
        self._start_accounts()
        self._started = True

    def start_notifier(self, peers: Peers | None) -> ActorRef:
        """The node's notification manager (``/user/notify``); documents tell it the @mentions
        their ops create."""
        directory = Directory(self.store)
        self.notifier = self.system.spawn(
            lambda: NotificationManager(
                directory=directory, config=self.config.notify, peers=peers
            ),
            name="notify",
        )
        self.config = dataclasses.replace(
            self.config,
            documents=dataclasses.replace(self.config.documents, mentions=self.notifier),
        )
        return self.notifier

    def _start_accounts(self) -> None:
        assert self.gateway is not None
        self.accounts = Accounts(
            self.store,
            secret=load_secret(self.config.db, self.config.secret),
            dev_login=self.config.dev_login,
            gateway=self.gateway,
            notifier=self.notifier,
        )

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.gateway is not None:
            await self.system.stop(self.gateway)
        if self.cluster is not None:
            await self.cluster.stop()
        await self.system.shutdown(drain=True)
        if self.legacy is not None:
            await self.legacy.stop()
        await self.committer.close()
        await self.store.close()
        self.obs.shutdown()

    def count(self, actor_type: str) -> int:
        """Live actors of one type (documents open, sessions)."""
        t = self.system.statistics().by_type.get(actor_type)
        return t.actors if t is not None else 0

    async def ask_document(self, request: Any) -> Any:
        assert self.manager is not None
        return await self.manager.ask(request, timeout=self.config.ask_timeout)


def cutover_routes(node: Node) -> list[Route]:
    """``GET``/``PUT /api/cutover`` (see :mod:`mailslot.migrate.cutover_http`)."""
    from mailslot.migrate.cutover_http import routes

    return routes(lambda: node.router, timeout=node.config.ask_timeout)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _doc_id(request: Request) -> str:
    doc = request.path_params["doc"]
    if not _ID.match(doc):
        raise _BadRequest(
            f"invalid document id {doc[:40]!r}: use 1-200 of A-Z a-z 0-9 . _ ~ : @ + = -"
        )
    return str(doc)


def _collection(request: Request) -> str:
    c = request.query_params.get("c", DEFAULT_COLLECTION)
    if not _ID.match(c):
        raise _BadRequest(f"invalid collection {c[:40]!r}")
    return c


def _int_param(request: Request, name: str, default: int | None, *, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(
            f"query parameter {name!r} must be an integer, got {raw[:20]!r}"
        ) from None
    if not lo <= value <= hi:
        raise _BadRequest(f"query parameter {name!r} must be between {lo} and {hi}, got {value}")
    return value


class _BadRequest(Exception):
    pass


class _CreateBody(msgspec.Struct, forbid_unknown_fields=True):
    id: str | None = None
    text: str = ""


def build_app(node: Node) -> Starlette:
    """The HTTP and WebSocket application of ``node``."""

    accounts = node.accounts
    assert accounts is not None, "start the node before building its app"

    async def healthz(request: Request) -> Response:
        stats = node.system.statistics()
        docs = stats.by_type.get("DocumentActor")
        assert node.gateway is not None
        gateway: GatewayStatistics = await node.gateway.ask(GatewayStats(), timeout=5.0)
        cluster = None
        if node.cluster is not None:
            cs = node.cluster.statistics()
            cluster = {
                "node": cs.node,
                "connected": cs.connected,
                "live": list(cs.live),
                "owned": sorted(node.cluster.owned_shards()),
                "active": list(cs.consuming),
            }
        return JSONResponse(
            {
                "status": "ok" if node.system.running else "stopping",
                "cluster": cluster,
                "actors": stats.actors,
                "documents_open": docs.actors if docs is not None else 0,
                "gateway": dataclasses.asdict(gateway),
                "writes": node.batcher.statistics(),
                "dead_letters": dict(stats.dead_letters),
            }
        )

    async def list_docs(request: Request) -> Response:
        if not await accounts.may_use_api(request):
            return _error(401, "sign in first: send 'Authorization: Bearer <token>'")
        c = _collection(request)
        limit = _int_param(request, "limit", 1000, lo=1, hi=10_000)
        after = request.query_params.get("after")
        docs = await node.store.list_documents(c, after=after, limit=limit or 1000)
        return JSONResponse(
            {
                "documents": [
                    {"id": d.doc, "version": d.version, "created": d.created, "updated": d.updated}
                    for d in docs
                ]
            }
        )

    async def create_doc(request: Request) -> Response:
        if not await accounts.may_use_api(request):
            return _error(401, "sign in first: send 'Authorization: Bearer <token>'")
        c = _collection(request)
        try:
            body = msgspec.json.decode(await request.body(), type=_CreateBody)
        except msgspec.ValidationError as exc:
            raise _BadRequest(f"invalid body: {exc}") from None
        except msgspec.DecodeError as exc:
            raise _BadRequest(f"body is not JSON: {exc}") from None
        doc = body.id or secrets.token_urlsafe(9)
        if not _ID.match(doc):
            raise _BadRequest(f"invalid document id {doc[:40]!r}")
        reply = await node.ask_document(
            SubmitOp(
                tag=1,
                c=c,
                d=doc,
                v=None,
                src=f"rest-{secrets.token_hex(6)}",
                seq=1,
                kind="create",
                op={"type": "http://sharejs.org/types/text-unicode", "data": body.text},
            )
        )
        if isinstance(reply, DocError):
            status = 409 if reply.code == "ERR_DOC_ALREADY_CREATED" else 400
            return JSONResponse({"error": reply.message, "code": reply.code}, status_code=status)
        assert isinstance(reply, OpAcked)
        assert node.accounts is not None
        await node.accounts.created(request, c, doc)
        return JSONResponse({"id": doc, "version": reply.v + 1}, status_code=201)

    async def get_doc(request: Request) -> Response:
        c, doc = _collection(request), _doc_id(request)
        if not await accounts.may_read(request, c, doc):
            return _error(403, f"you may not read {c}/{doc}")
        v = _int_param(request, "v", None, lo=0, hi=2**53)
        reply = await node.ask_document(SnapshotAt(tag=1, c=c, d=doc, version=v))
        if isinstance(reply, DocError):
            return JSONResponse({"error": reply.message, "code": reply.code}, status_code=400)
        assert isinstance(reply, DocSnapshot)
        if reply.type is None and reply.v == 0:
            return _error(404, f"no document {c}/{doc}")
        return JSONResponse({"id": doc, "v": reply.v, "type": reply.type, "data": reply.data})

    async def history(request: Request) -> Response:
        c, doc = _collection(request), _doc_id(request)
        if not await accounts.may_read(request, c, doc):
            return _error(403, f"you may not read {c}/{doc}")
        limit = _int_param(request, "limit", 50, lo=1, hi=1000) or 50
        offset = _int_param(request, "offset", 0, lo=0, hi=2**31) or 0
        ops = await node.store.history(c, doc, limit=limit, offset=offset)
        return JSONResponse(
            {
                "id": doc,
                "ops": [
                    {
                        "v": o.version,
                        "ts": o.timestamp,
                        "src": o.src,
                        "seq": o.seq,
                        "kind": o.kind,
                        "op": o.op,
                        "user": o.user,
                    }
                    for o in ops
                ],
            }
        )

    async def websocket(ws: WebSocket) -> None:
        assert node.gateway is not None
        assert node.accounts is not None
        who = await node.accounts.websocket_session(ws)
        if who is None:
            await ws.close(code=1008)  # before the upgrade: the client sees HTTP 403
            return
        user, grants = who
        await serve_websocket(
            ws,
            node.gateway,
            node.config.gateway,
            user=user,
            permission=grants,
            batcher=node.batcher,
        )

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except _BadRequest as exc:
                return _error(400, str(exc))
            except AskTimeout as exc:
                return _error(503, f"the document did not answer in time: {exc}")
            except MailslotError as exc:
                log.warning("%s %s failed: %r", request.method, request.url.path, exc)
                return _error(500, f"{type(exc).__name__}: {exc}")

        return run

    meters = node.obs.meters
    meters.docs_open.set_function(lambda: node.count("DocumentActor"))
    meters.sessions.set_function(lambda: node.count("SessionActor"))
    observe = node.obs.app(node.system)  # docs open and sessions come from the meters above
    routes = [
        Route("/healthz", guarded(healthz)),
        Route("/api/docs", guarded(list_docs), methods=["GET"]),
        Route("/api/docs", guarded(create_doc), methods=["POST"]),
        Route("/api/docs/{doc}", guarded(get_doc), methods=["GET"]),
        Route("/api/docs/{doc}/history", guarded(history), methods=["GET"]),
        WebSocketRoute("/ws", websocket),
        *cutover_routes(node),
        *observe.routes,  # /metrics, /dashboard, /dashboard/data
        *accounts.routes(collection=DEFAULT_COLLECTION),  # users, sharing, inbox, the editor
    ]
    return Starlette(routes=routes)


class _Transport:
    """The gateway's :class:`~mailslot.collab.gateway.DirectSocket` over uvicorn's protocol."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def buffered(self) -> int:
        return self._protocol.transport.get_write_buffer_size()

    def is_closing(self) -> bool:
        p = self._protocol
        return p.close_sent or p.transport.is_closing()

    def close_now(self, code: int, reason: str) -> None:
        p = self._protocol
        if not self.is_closing():
            p.conn.send_close(code, reason)
            p.transport.write(b"".join(p.conn.data_to_send()))
            p.close_sent = True
            p.transport.close()  # sent once the client reads what is buffered, or it times out


class _WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, handing its transport to the app (``mailslot.transport``)
    so that the gateway writes frames without an ASGI round trip per message."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"]["mailslot.transport"] = _Transport(self)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: the node shuts down in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RunningServer:
    """A node listening on a port (see :func:`start_server`)."""

    def __init__(self, node: Node, server: _Server, task: asyncio.Task[None], url: str) -> None:
        self.node = node
        self.url = url
        self._server = server
        self._task = task

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws"

    @property
    def done(self) -> asyncio.Task[None]:
        """Completes if the HTTP server stops by itself."""
        return self._task

    async def stop(self) -> None:
        """Stop accepting, close connections, then stop the node (documents drain, commit)."""
        self._server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
        await self.node.stop()


UVICORN_SETTINGS: dict[str, Any] = {
    # compression would deflate every broadcast once per subscriber: no "encode once"
    "ws_per_message_deflate": False,
    "http": "httptools",
    "lifespan": "off",
    "log_level": "warning",
    "access_log": False,
}
"""The HTTP/WebSocket stack's settings a node serves with (``bench/relay_server.py`` too)."""


async def start_server(config: NodeConfig, *, node: Node | None = None) -> RunningServer:
    """Start a node and its HTTP server on the running loop; returns once it listens."""
    node = node or Node(config)
    await node.start()
    uv_config = uvicorn.Config(
        build_app(node),
        host=config.host,
        port=config.port,
        ws_max_size=config.ws_max_size,
        ws_ping_interval=config.ws_ping_interval,
        ws_ping_timeout=config.ws_ping_timeout,
        ws=_WebSocketProtocol if config.direct_writes else "websockets-sansio",
        **UVICORN_SETTINGS,
    )
    server = _Server(uv_config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                await task
                raise ConfigError(f"cannot listen on {config.host}:{config.port}")
            await asyncio.sleep(0.01)
    except BaseException:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        await node.stop()
        raise
    port = config.port
    if server.servers and server.servers[0].sockets:
        port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://{config.host}:{port}"
    if node.cluster is not None:
        node.cluster.advertised_url = url
    return RunningServer(node, server, task, url)


GC_THRESHOLDS = (10_000, 10, 10)
"""The collector's thresholds in a serving process (CPython's defaults are 700, 10, 10)."""


def tune_gc() -> None:
    """Set the serving process's garbage collector for a server's allocation pattern.

    Every op allocates short-lived objects (frames, dicts, futures) while the documents'
    in-memory logs keep a long-lived heap (about 330k objects with 100 busy documents). With
    CPython's defaults the young generation is collected every 700 allocations and enough of
    those short-lived objects survive into the old generations that full collections (40-50 ms
    each at this size) ran about once a second under load. Collecting the young generation every
    10,000 allocations lets them die young first, and what startup made (modules, classes, the
    app) is frozen out of every collection. Measured with ``mailslot bench collab`` (K=64, D=100,
    closed loop): full collections 11 -> 0-1 per run, CPU per message -5 to -10%, p99 -30%.
    Cyclic garbage is still collected, just in larger, rarer batches.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


async def serve(config: NodeConfig, *, ready: Callable[[str], None] | None = None) -> None:
    """Run a node until SIGINT or SIGTERM; ``ready`` gets the URL once it listens."""
    running = await start_server(config)
    tune_gc()
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        if ready is not None:
            ready(running.url)
        await asyncio.wait([running.done, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await running.stop()
