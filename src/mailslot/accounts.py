"""Users and access over HTTP: sign-in, tokens, sharing, the inbox, the browser editor's files.

Theory of operation
-------------------
:class:`Accounts` is the shell around :mod:`mailslot.collab.access` (tokens, rules) and
:class:`~mailslot.store.directory.Directory` (users, members, inboxes): it checks the token of
every request that needs one, reads and writes the directory, and tells the actors that must know
(:class:`~mailslot.collab.access.AccessChanged` to the gateway's sessions,
:class:`~mailslot.collab.notify.Shared` and :class:`~mailslot.collab.notify.UnreadChanged` to the
notification manager).

A token travels as ``Authorization: Bearer <token>``, as ``?token=`` in the URL (the WebSocket)
or as the ``mailslot_token`` cookie, checked in that order. The WebSocket endpoint checks it
*before* the upgrade: a bad token is refused with HTTP 403 and never reaches a session.

*Dev login.* On the embedded default, ``POST /api/dev-login {"name": "ann"}`` signs anyone in by
name alone (creating the user), and a WebSocket without a token is an anonymous editor of every
document, so the stock ShareDB client works with no set-up. ``mailslot serve --no-dev-login``
turns both off: users are then made with ``mailslot user add NAME`` (which prints a token) or
``POST /api/users`` by a signed-in user, and every socket needs a token.

*The secret* that signs tokens comes from ``NodeConfig.secret``, else ``MAILSLOT_SECRET``, else
a file ``secret.key`` beside the SQLite database (created with mode 0600 on first start), so
tokens survive restarts of the embedded default. A PostgreSQL node without a configured secret
makes a random one per process and says so in the log (set ``MAILSLOT_SECRET`` on every node).

REST (JSON; each bad request gets a 4xx naming what was wrong):

- ``POST /api/dev-login`` ``{"name"}`` → ``{"token", "user"}`` (dev mode only);
- ``GET /api/config`` → ``{"dev_login": bool}``; ``GET /api/me`` → the signed-in user;
- ``GET /api/users``, ``POST /api/users`` ``{"name"}`` → ``{"user", "token"}``;
- ``GET /api/me/docs`` → the documents the user may reach, with its role;
- ``GET|POST /api/docs/{id}/members`` ``{"user", "role"}`` (owners share), and
  ``DELETE /api/docs/{id}/members/{user}``;
- ``GET /api/notifications?unread=1&limit=50``, ``POST /api/notifications/read``
  ``{"ids": [...]}`` or ``{"all": true}``;
- ``PUT /api/me/webhook`` ``{"url": "https://..." | null}``, ``GET /api/webhooks/dead-letters``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket

from mailslot.collab.access import (
    AccessChanged,
    Grants,
    check_name,
    sign_token,
    verify_token,
)
from mailslot.collab.notify import Shared, UnreadChanged, notification_json
from mailslot.errors import AccessDenied, ConfigError, InvalidKey, StoreError
from mailslot.runtime import ActorRef
from mailslot.store import Store
from mailslot.store.directory import Directory
from mailslot.store.url import parse_url

__all__ = [
    "COOKIE",
    "TOKEN_TTL",
    "Accounts",
    "add_cli",
    "load_secret",
    "run_cli",
    "web_dir",
]

log = logging.getLogger("mailslot.accounts")

COOKIE = "mailslot_token"
#: tokens last a week
TOKEN_TTL = 7 * 24 * 3600.0
_WEB_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "client.js": "text/javascript; charset=utf-8",
    "editor.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


def load_secret(db: str, configured: str | None = None) -> bytes:
    """The token-signing secret (see the module docstring for where it comes from).

    Raises:
        ConfigError: the secret file exists but cannot be read, or cannot be created.
    """
    value = configured or os.environ.get("MAILSLOT_SECRET")
    if value:
        return value.encode()
    config = parse_url(db)
    if config.engine != "sqlite" or config.path == ":memory:":
        log.warning("no MAILSLOT_SECRET: tokens are signed with a per-process secret")
        return secrets.token_bytes(32)
    path = Path(config.path).parent / "secret.key"
    try:
        if path.exists():
            return path.read_bytes().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secret)
        return secret
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read or create the token secret {path}: {exc}") from exc


def web_dir() -> Path | None:
    """Where the browser editor's files are: packaged (``mailslot/web``) or in the checkout."""
    packaged = Path(str(files("mailslot"))) / "web"
    if (packaged / "index.html").exists():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "web"
    if (checkout / "index.html").exists():
        return checkout
    return None


class _Bad(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Name(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class _Member(msgspec.Struct, forbid_unknown_fields=True):
    user: str
    role: Literal["owner", "write", "read"] = "write"


class _Read(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str] | None = None
    all: bool = False


class _Webhook(msgspec.Struct, forbid_unknown_fields=True):
    url: str | None


def _now_ms() -> int:
    return int(time.time() * 1000)


class Accounts:
    """Users, tokens, access and the inbox for one node (see the module docstring).

    Args:
        store: the node's open store.
        secret: signs and checks tokens.
        dev_login: whether name-only sign-in and anonymous sockets are allowed.
        gateway: told :class:`AccessChanged` on every share and revocation.
        notifier: told :class:`Shared` and :class:`UnreadChanged`.
        clock: wall-clock seconds (tokens' expiry).
    """

    def __init__(
        self,
        store: Store,
        *,
        secret: bytes,
        dev_login: bool,
        gateway: ActorRef | None = None,
        notifier: ActorRef | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Directory(store)
        self.secret = secret
        self.dev_login = dev_login
        self.gateway = gateway
        self.notifier = notifier
        self.clock = clock

    # ---- tokens ----------------------------------------------------------------------------

    def token_for(self, user: str) -> str:
        return sign_token(user, secret=self.secret, now=self.clock(), ttl=TOKEN_TTL)

    def presented_token(self, conn: HTTPConnection) -> str | None:
        header = conn.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return conn.query_params.get("token") or conn.cookies.get(COOKIE)

    async def user_of(self, conn: HTTPConnection) -> str | None:
        """The signed-in user of a request, ``None`` without a token.

        Raises:
            AccessDenied: a token was presented and is invalid, or names a deleted user.
        """
        token = self.presented_token(conn)
        if not token:
            return None
        user = verify_token(token, secret=self.secret, now=self.clock())
        if await self.directory.user(user) is None:
            raise AccessDenied(f"user {user!r} no longer exists")
        return user

    async def require_user(self, conn: HTTPConnection) -> str:
        try:
            user = await self.user_of(conn)
        except AccessDenied as exc:
            raise _Bad(401, str(exc)) from None
        if user is None:
            raise _Bad(401, "sign in first: send 'Authorization: Bearer <token>'")
        return user

    async def websocket_session(self, ws: WebSocket) -> tuple[str | None, Grants] | None:
        """Who a WebSocket is and what it may reach, checked before the upgrade.

        Returns ``None`` when the socket must be refused (403).
        """
        try:
            user = await self.user_of(ws)
        except (AccessDenied, StoreError) as exc:
            log.info("WebSocket refused: %s", exc)
            return None
        if user is None:
            if not self.dev_login:
                log.info("WebSocket refused: no token and dev login is off")
                return None
            return None, Grants(None)
        memberships = await self.directory.memberships(user)
        return user, Grants.of(user, ((m.collection, m.doc, m.role) for m in memberships))

    # ---- documents --------------------------------------------------------------------------

    async def created(self, conn: HTTPConnection, collection: str, doc: str) -> None:
        """A document was created over REST: a signed-in creator becomes its owner."""
        try:
            user = await self.user_of(conn)
        except AccessDenied:
            return
        if user is not None:
            await self.directory.grant(collection, doc, user, "owner", now=_now_ms())
            self.tell_gateway(AccessChanged(user, collection, doc, "owner"))

    def tell_gateway(self, change: AccessChanged) -> None:
        if self.gateway is not None:
            self.gateway.tell(change)

    async def may_use_api(self, conn: HTTPConnection) -> bool:
        """Whether a request may list or create documents: signed in, or anonymous in dev mode."""
        try:
            user = await self.user_of(conn)
        except AccessDenied:
            return False
        return user is not None or self.dev_login

    async def may_read(self, conn: HTTPConnection, collection: str, doc: str) -> bool:
        """Whether this request may read the document (REST reads follow the socket rules)."""
        try:
            user = await self.user_of(conn)
        except AccessDenied:
            return False
        if user is None:
            return self.dev_login
        return await self.directory.role(collection, doc, user) is not None

    # ---- routes -----------------------------------------------------------------------------

    def routes(self, *, collection: str = "docs") -> list[Route]:
        """The REST routes and the editor's pages."""
        directory = self.directory
        c = collection

        async def config(request: Request) -> Response:
            return JSONResponse({"dev_login": self.dev_login, "collection": c})

        async def dev_login(request: Request) -> Response:
            if not self.dev_login:
                raise _Bad(403, "dev login is turned off on this server (--no-dev-login)")
            name = _name(await _body(request, _Name))
            await directory.add_user(name, now=_now_ms())
            token = self.token_for(name)
            response = JSONResponse({"token": token, "user": name, "dev": True})
            response.set_cookie(COOKIE, token, max_age=int(TOKEN_TTL), samesite="strict")
            return response

        async def me(request: Request) -> Response:
            user = await self.require_user(request)
            info = await directory.user(user)
            assert info is not None
            return JSONResponse({"user": user, "created": info.created, "webhook": info.webhook})

        async def list_users(request: Request) -> Response:
            if not self.dev_login:
                await self.require_user(request)
            return JSONResponse({"users": [u.name for u in await directory.users()]})

        async def add_user(request: Request) -> Response:
            if not self.dev_login:
                await self.require_user(request)
            name = _name(await _body(request, _Name))
            if not await directory.add_user(name, now=_now_ms()):
                raise _Bad(409, f"user {name!r} exists already")
            return JSONResponse({"user": name, "token": self.token_for(name)}, status_code=201)

        async def my_docs(request: Request) -> Response:
            user = await self.require_user(request)
            memberships = await directory.memberships(user)
            return JSONResponse(
                {
                    "documents": [
                        {"id": m.doc, "role": m.role, "since": m.since}
                        for m in memberships
                        if m.collection == c
                    ]
                }
            )

        async def members(request: Request) -> Response:
            doc = _doc(request)
            user = await self.require_user(request)
            if await directory.role(c, doc, user) is None:
                raise _Bad(404, f"no document {doc!r} shared with you")
            return JSONResponse(
                {
                    "members": [
                        {"user": m.user, "role": m.role} for m in await directory.members(c, doc)
                    ]
                }
            )

        async def share(request: Request) -> Response:
            doc = _doc(request)
            user = await self.require_user(request)
            body = await _body(request, _Member)
            target = _name(body.user)
            await self.require_owner(user, c, doc)
            if await directory.user(target) is None:
                raise _Bad(404, f"no user {target!r}")
            at = _now_ms()
            await directory.grant(c, doc, target, body.role, now=at)
            self.tell_gateway(AccessChanged(target, c, doc, body.role))
            if target != user and self.notifier is not None:
                self.notifier.tell(
                    Shared(user=target, collection=c, doc=doc, role=body.role, by=user, at=at)
                )
            return JSONResponse({"user": target, "role": body.role})

        async def unshare(request: Request) -> Response:
            doc = _doc(request)
            user = await self.require_user(request)
            target = _name(request.path_params["user"])
            if target != user:
                await self.require_owner(user, c, doc)
            if not await directory.revoke(c, doc, target):
                raise _Bad(404, f"{target!r} is not a member of {doc!r}")
            self.tell_gateway(AccessChanged(target, c, doc, None))
            return JSONResponse({"user": target, "role": None})

        async def notifications(request: Request) -> Response:
            user = await self.require_user(request)
            unread_only = request.query_params.get("unread") in {"1", "true", "yes"}
            limit = _limit(request)
            inbox = await directory.notifications(user, unread_only=unread_only, limit=limit)
            return JSONResponse(
                {
                    "notifications": [notification_json(n) for n in inbox],
                    "unread": await directory.unread_count(user),
                }
            )

        async def mark_read(request: Request) -> Response:
            user = await self.require_user(request)
            body = await _body(request, _Read)
            if not body.all and body.ids is None:
                raise _Bad(400, 'send {"ids": [...]} or {"all": true}')
            if body.ids is not None and len(body.ids) > 1000:
                raise _Bad(400, "at most 1000 ids at once")
            marked = await directory.mark_read(user, None if body.all else body.ids, now=_now_ms())
            if self.notifier is not None:
                self.notifier.tell(UnreadChanged(user))
            return JSONResponse({"marked": marked, "unread": await directory.unread_count(user)})

        async def set_webhook(request: Request) -> Response:
            user = await self.require_user(request)
            body = await _body(request, _Webhook)
            if body.url is not None:
                parts = urlsplit(body.url)
                if parts.scheme not in {"http", "https"} or not parts.netloc:
                    raise _Bad(400, f"webhook must be an http(s) URL, got {body.url[:80]!r}")
            await directory.set_webhook(user, body.url)
            return JSONResponse({"user": user, "webhook": body.url})

        async def dead_letters(request: Request) -> Response:
            user = await self.require_user(request)
            dead = await directory.dead_deliveries(user, limit=_limit(request))
            return JSONResponse({"dead_letters": [msgspec.to_builtins(d) for d in dead]})

        web = web_dir()

        async def page(request: Request) -> Response:
            name = request.path_params.get("name", "index.html")
            kind = _WEB_FILES.get(name)
            if web is None or kind is None:
                return JSONResponse({"error": f"no file {name!r}"}, status_code=404)
            return Response(
                (web / name).read_bytes(),
                media_type=kind,
                headers={"cache-control": "no-cache"},
            )

        guard = self.guarded
        return [
            Route("/", page, methods=["GET"]),
            Route("/web/{name}", page, methods=["GET"]),
            Route("/api/config", guard(config), methods=["GET"]),
            Route("/api/dev-login", guard(dev_login), methods=["POST"]),
            Route("/api/me", guard(me), methods=["GET"]),
            Route("/api/me/docs", guard(my_docs), methods=["GET"]),
            Route("/api/me/webhook", guard(set_webhook), methods=["PUT"]),
            Route("/api/users", guard(list_users), methods=["GET"]),
            Route("/api/users", guard(add_user), methods=["POST"]),
            Route("/api/docs/{doc}/members", guard(members), methods=["GET"]),
            Route("/api/docs/{doc}/members", guard(share), methods=["POST"]),
            Route("/api/docs/{doc}/members/{user}", guard(unshare), methods=["DELETE"]),
            Route("/api/notifications", guard(notifications), methods=["GET"]),
            Route("/api/notifications/read", guard(mark_read), methods=["POST"]),
            Route("/api/webhooks/dead-letters", guard(dead_letters), methods=["GET"]),
        ]

    async def require_owner(self, user: str, c: str, doc: str) -> None:
        role = await self.directory.role(c, doc, user)
        if role != "owner":
            raise _Bad(403, f"only an owner of {doc!r} may change who can reach it")

    @staticmethod
    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except _Bad as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except InvalidKey as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except StoreError as exc:
                log.warning("%s %s failed: %r", request.method, request.url.path, exc)
                return JSONResponse({"error": f"the store failed: {exc}"}, status_code=503)

        return run


async def _body(request: Request, kind: type[Any]) -> Any:
    raw = await request.body()
    if len(raw) > 64 * 1024:
        raise _Bad(413, "body too large")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise _Bad(400, f"invalid body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise _Bad(400, f"body is not JSON: {exc}") from None


def _name(value: object) -> str:
    if isinstance(value, _Name):
        value = value.name
    return check_name(value)


def _doc(request: Request) -> str:
    doc = str(request.path_params["doc"])
    if not doc or len(doc) > 200:
        raise _Bad(400, "invalid document id")
    return doc


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise _Bad(400, f"'limit' must be an integer from 1 to 1000, got {raw[:20]!r}")
    return int(raw)


# ---- the command line: `mailslot user add NAME` ------------------------------------------------


def add_cli(subparsers: Any) -> None:
    """Add ``mailslot user`` to the CLI."""
    user = subparsers.add_parser("user", help="manage users (mailslot user add NAME)")
    actions = user.add_subparsers(dest="user_action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="create a user and print a sign-in token")
    add.add_argument("name", help="1-32 letters, digits, '_', '.' or '-'")
    add.add_argument("--db", default="sqlite:///./data/mailslot.db", help="the server's database")
    share = actions.add_parser("token", help="print a new sign-in token for an existing user")
    share.add_argument("name")
    share.add_argument("--db", default="sqlite:///./data/mailslot.db", help="the server's database")
    listing = actions.add_parser("list", help="list the users")
    listing.add_argument(
        "--db", default="sqlite:///./data/mailslot.db", help="the server's database"
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run ``mailslot user ...``; raises :class:`ConfigError` for a bad argument."""
    return asyncio.run(_user_command(args))


async def _user_command(args: argparse.Namespace) -> int:
    from mailslot.store import open_store

    store = open_store(args.db)
    await store.open()
    try:
        directory = Directory(store)
        if args.user_action == "list":
            for u in await directory.users():
                print(u.name)
            return 0
        try:
            name = check_name(args.name)
        except InvalidKey as exc:
            raise ConfigError(str(exc)) from None
        if args.user_action == "add":
            if not await directory.add_user(name, now=_now_ms()):
                print(f"user {name!r} exists already; a new token:")
        elif await directory.user(name) is None:
            raise ConfigError(f"no user {name!r}: create it with 'mailslot user add {name}'")
        secret = load_secret(args.db)
        print(sign_token(name, secret=secret, now=time.time(), ttl=TOKEN_TTL))
        return 0
    finally:
        await store.close()
