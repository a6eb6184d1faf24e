"""Notifications: mentions and shares into each user's inbox, live to its sessions, and webhooks.

Theory of operation
-------------------
A :class:`NotificationManager` per node routes by user to one :class:`NotificationDispatcher`
per user, started on first use and passivated when idle (messages that arrive while one stops wait
in the manager and go to the next incarnation, in order). Its inputs:

- :class:`~mailslot.collab.mentions.Mentioned` from a document actor after a commit: one
  candidate per mentioned name (the author mentioning itself is ignored);
- :class:`Shared` from the REST layer when a document is shared with a user;
- :class:`Online` from a session of a signed-in user (the dispatcher watches it until it stops);
- :class:`UnreadChanged` from the REST layer after notifications were marked read.

A dispatcher handles one message at a time, so one user's inbox is written in order. For a
candidate it checks that the user exists and may read the document (an unowned document is open
to all), then stores the notification in the inbox (:class:`~mailslot.store.directory.Directory`)
under an id derived from its cause (document, version, kind, user): a redelivered op or a retried
share finds the id stored and nothing more happens. Only a new notification is delivered: live,
as ``{"a": "x-notify", ...}`` to each open session of the user (a droppable
:class:`~mailslot.collab.protocol.docs.Push`: under overload a live copy may be lost, the inbox
keeps it), and to the user's webhook if it has one.

*On a cluster* each node runs its own manager; a user's dispatcher exists on every node where
the user has a session, and on the node whose document actor saw the mention. Inbox ids are
derived from the cause, so only one of them stores a notification; the live copies and unread
counts a dispatcher sends its sessions also go, through :class:`Peers`, as a
:class:`UserFrame` to the dispatchers of that user on the other nodes (a topic per user, bound
while the user has a session on the node), which hand them to their own sessions.

*Webhooks.* Each dispatcher has a circuit breaker (pybreaker) around its user's endpoint. A
delivery is a POST of the notification as JSON with an ``Idempotency-Key`` header (the
notification id, the same on every retry), run in a task the dispatcher owns; a failure (network
error, timeout, a non-2xx answer, or the breaker open) is retried after an exponential backoff
(timers, so nothing sleeps), up to ``max_attempts``; then the delivery goes to the
``webhook_dead_letters`` table, listed over REST. At most ``max_deliveries`` deliveries per user
are in flight or waiting to retry; beyond that a new one goes to the dead letters at once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
import pybreaker

from mailslot.collab.access import allowed
from mailslot.collab.mentions import Mentioned
from mailslot.collab.peers import Peers
from mailslot.collab.protocol.docs import Push
from mailslot.errors import InvalidActorName, MailboxFull, MailslotError, StoreError
from mailslot.meters import Meters
from mailslot.runtime import (
    Actor,
    ActorRef,
    Directive,
    ReceiveTimeout,
    SupervisorStrategy,
    Terminated,
)
from mailslot.store.directory import DeadDelivery, Directory, Notification

__all__ = [
    "NotificationDispatcher",
    "NotificationManager",
    "NotifyConfig",
    "Online",
    "Poster",
    "Shared",
    "UnreadChanged",
    "UserFrame",
    "WebhookFailed",
    "notification_frame",
    "notification_id",
    "notification_json",
]

log = logging.getLogger("mailslot.collab.notify")

#: ``await poster(url, body, headers)`` posts ``body`` and returns the HTTP status code.
Poster = Callable[[str, bytes, dict[str, str]], Awaitable[int]]


class WebhookFailed(MailslotError):
    """A webhook delivery attempt failed (the breaker counts it)."""


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """Tuning for notifications.

    Args:
        max_attempts: webhook attempts per notification before it is dead-lettered.
        backoff: seconds before the first retry; doubled each time, up to ``max_backoff``.
        max_backoff: the longest wait between two attempts.
        fail_max: consecutive failures that open a user's circuit breaker.
        reset_timeout: seconds an open breaker waits before letting one attempt through.
        max_deliveries: deliveries per user in flight or waiting to retry.
        idle_timeout: a dispatcher with no session and no delivery passivates after this long.
        now_ms: the wall clock in ms (notification times).
        poster: how webhooks are posted (default: the manager's HTTP client).
        meters: where notifications and deliveries are counted.
    """

    max_attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 30.0
    fail_max: int = 5
    reset_timeout: float = 30.0
    max_deliveries: int = 100
    idle_timeout: float = 300.0
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    poster: Poster | None = None
    meters: Meters | None = None


class Online(msgspec.Struct, frozen=True):
    """The sender is a live session of ``user``: deliver its notifications there."""

    user: str


class Shared(msgspec.Struct, frozen=True, kw_only=True):
    """``by`` gave ``user`` the role ``role`` on ``collection/doc`` at ``at`` (ms)."""

    user: str
    collection: str
    doc: str
    role: str
    by: str | None
    at: int


class UnreadChanged(msgspec.Struct, frozen=True):
    """``user`` marked notifications read: tell its sessions the new unread count."""

    user: str


class UserFrame(msgspec.Struct, frozen=True, tag="collab.notify.frame"):
    """A frame for ``user``'s sessions on the other nodes (droppable: a live copy).

    Attributes:
        user: whose sessions.
        frame: the encoded ``x-notify`` or ``x-unread`` frame.
        origin: the node it comes from (a node skips its own).
    """

    __mailslot_droppable__: ClassVar[bool] = True

    user: str
    frame: str
    origin: str


class _Mention(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    collection: str
    doc: str
    version: int
    author: str | None
    excerpt: str


class _Attempt(msgspec.Struct, frozen=True):
    notification: Any  # Notification
    url: str
    attempt: int


class _Outcome(msgspec.Struct, frozen=True):
    attempt: Any  # _Attempt
    error: str | None


class _Passivate(msgspec.Struct, frozen=True):
    user: str


def notification_id(kind: str, collection: str, doc: str, version: int, user: str) -> str:
    """The idempotency key of a notification: the same cause always gives the same id."""
    key = f"{kind}\x00{collection}\x00{doc}\x00{version}\x00{user}".encode()
    return f"{kind[0]}-{hashlib.sha256(key).hexdigest()[:24]}"


def notification_json(n: Notification) -> dict[str, Any]:
    """A notification as clients see it (REST and ``x-notify``)."""
    return {
        "id": n.id,
        "kind": n.kind,
        "c": n.collection,
        "d": n.doc,
        "v": n.version,
        "author": n.author,
        "excerpt": n.excerpt,
        "ts": n.ts,
        "read": n.read_at is not None,
    }


def notification_frame(n: Notification, unread: int) -> str:
    """The ``x-notify`` message a live session gets."""
    body = {"a": "x-notify", "notification": notification_json(n), "unread": unread}
    return msgspec.json.encode(body).decode()


class NotificationDispatcher(Actor):
    """One user's notifications (see the module docstring)."""

    def __init__(
        self,
        user: str,
        *,
        directory: Directory,
        manager: ActorRef | None,
        config: NotifyConfig,
        peers: Peers | None = None,
    ) -> None:
        self.user = user
        self.directory = directory
        self.manager = manager
        self.config = config
        self.peers = peers
        self.meters = config.meters
        self.sessions: set[ActorRef] = set()
        self.deliveries = 0
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=config.fail_max, reset_timeout=config.reset_timeout, name=f"webhook:{user}"
        )

    def started(self) -> None:
        self.context.set_receive_timeout(self.config.idle_timeout)

    async def receive(self, message: Any) -> None:
        if isinstance(message, _Mention):
            await self.mention(message)
        elif isinstance(message, Shared):
            await self.shared(message)
        elif isinstance(message, Online):
            sender = self.context.sender
            if sender is not None and sender not in self.sessions:
                if not self.sessions and self.peers is not None:
                    self.peers.bind(self.user)
                self.sessions.add(sender)
                self.context.watch(sender)
        elif isinstance(message, Terminated):
            if message.actor in self.sessions:
                self.sessions.discard(message.actor)
                if not self.sessions and self.peers is not None:
                    self.peers.unbind(self.user)
        elif isinstance(message, UserFrame):
            self.push_local(message.frame)
        elif isinstance(message, UnreadChanged):
            unread = await self.directory.unread_count(self.user)
            self.push(msgspec.json.encode({"a": "x-unread", "unread": unread}).decode())
        elif isinstance(message, _Attempt):
            self.attempt(message)
        elif isinstance(message, _Outcome):
            await self.outcome(message)
        elif isinstance(message, ReceiveTimeout):
            if not self.sessions and not self.deliveries and self.manager is not None:
                self.manager.tell(_Passivate(self.user))
        else:
            self.context.unhandled(message)

    # ---- creating notifications ------------------------------------------------------------

    async def mention(self, m: _Mention) -> None:
        user = await self.directory.user(self.user)
        if user is None:
            return  # not a user: "@everyone", an e-mail-ish word...
        if await self.directory.restricted(m.collection, m.doc):
            role = await self.directory.role(m.collection, m.doc, self.user)
            if not allowed(role, write=False):
                return  # they could not open it: no notification, no excerpt leaked
        n = Notification(
            id=notification_id("mention", m.collection, m.doc, m.version, self.user),
            user=self.user,
            kind="mention",
            collection=m.collection,
            doc=m.doc,
            version=m.version,
            author=m.author,
            excerpt=m.excerpt,
            ts=self.config.now_ms(),
        )
        await self.store_and_deliver(n, user.webhook)

    async def shared(self, s: Shared) -> None:
        user = await self.directory.user(self.user)
        if user is None:
            return
        who = s.by or "someone"
        n = Notification(
            id=notification_id("share", s.collection, s.doc, s.at, self.user),
            user=self.user,
            kind="share",
            collection=s.collection,
            doc=s.doc,
            version=s.at,
            author=s.by,
            excerpt=f"{who} shared “{s.doc}” with you ({s.role})",
            ts=self.config.now_ms(),
        )
        await self.store_and_deliver(n, user.webhook)

    async def store_and_deliver(self, n: Notification, webhook: str | None) -> None:
        if not await self.directory.add_notification(n):
            if self.meters is not None:
                self.meters.notify_duplicates.inc()
            return
        if self.meters is not None:
            self.meters.notify_created.labels(n.kind).inc()
        if self.sessions or self.peers is not None:
            unread = await self.directory.unread_count(self.user)
            self.push(notification_frame(n, unread))
        if webhook:
            if self.deliveries >= self.config.max_deliveries:
                await self.dead_letter(
                    _Attempt(n, webhook, 0), "too many deliveries waiting for this user"
                )
            else:
                self.deliveries += 1
                self.attempt(_Attempt(n, webhook, 1))

    def push(self, frame: str) -> None:
        """``frame`` to the user's sessions here and, on a cluster, on the other nodes."""
        self.push_local(frame)
        peers = self.peers
        if peers is not None:
            peers.ref.tell(UserFrame(self.user, frame, peers.origin), self.context.self)

    def push_local(self, frame: str) -> None:
        me = self.context.self
        for ref in self.sessions:
            ref.tell(Push(frame), me)
            if self.meters is not None:
                self.meters.notify_live.inc()

    # ---- webhooks --------------------------------------------------------------------------

    def attempt(self, a: _Attempt) -> None:
        poster = self.config.poster
        if poster is None:
            self.context.self.tell(_Outcome(a, "no HTTP client to post webhooks with"))
            return
        n: Notification = a.notification
        body = msgspec.json.encode({"user": self.user, "notification": notification_json(n)})
        headers = {
            "content-type": "application/json",
            "idempotency-key": n.id,
            "user-agent": "mailslot-webhook/1",
        }

        async def post() -> None:
            with self.breaker.calling():
                status = await poster(a.url, body, headers)
                if not 200 <= status < 300:
                    raise WebhookFailed(f"the endpoint answered HTTP {status}")

        def failed(exc: BaseException) -> _Outcome:
            if isinstance(exc, pybreaker.CircuitBreakerError):
                return _Outcome(a, f"circuit open: {exc}")
            return _Outcome(a, f"{type(exc).__name__}: {exc}")

        self.context.pipe_to_self(post(), lambda _: _Outcome(a, None), failed)

    async def outcome(self, o: _Outcome) -> None:
        a: _Attempt = o.attempt
        if o.error is None:
            self.deliveries -= 1
            if self.meters is not None:
                self.meters.notify_webhook.labels("delivered").inc()
            return
        if a.attempt >= self.config.max_attempts:
            self.deliveries -= 1
            await self.dead_letter(a, o.error)
            return
        if self.meters is not None:
            self.meters.notify_webhook.labels("retried").inc()
        delay = min(self.config.max_backoff, self.config.backoff * 2 ** (a.attempt - 1))
        n: Notification = a.notification
        retry = _Attempt(n, a.url, a.attempt + 1)
        self.context.start_single_timer(("retry", n.id), retry, delay)

    async def dead_letter(self, a: _Attempt, error: str) -> None:
        n: Notification = a.notification
        if self.meters is not None:
            self.meters.notify_webhook.labels("dead").inc()
        log.warning("webhook of %s for %s failed for good: %s", self.user, n.id, error)
        dead = DeadDelivery(
            id=f"w-{n.id}",
            user=self.user,
            notification_id=n.id,
            url=a.url,
            attempts=a.attempt,
            error=error[:500],
            payload=notification_json(n),
            ts=self.config.now_ms(),
        )
        try:
            await self.directory.add_dead_delivery(dead)
        except StoreError as exc:  # logged; the notification itself is in the inbox
            log.error("cannot store the dead letter of %s: %r", n.id, exc)


class NotificationManager(Actor):
    """Routes by user to one :class:`NotificationDispatcher` each (see the module docstring).

    Args:
        directory: users, memberships and inboxes.
        config: notification tuning; without a ``poster``, the manager posts webhooks with an
            HTTP client it owns (httpx), opened when it starts and closed when it stops.
        peers: on a cluster, the same users' dispatchers on the other nodes (``None`` on one
            node).
    """

    supervisor_strategy = SupervisorStrategy(
        directive=Directive.RESTART,
        max_restarts=5,
        within=60.0,
        min_backoff=0.05,
        max_backoff=2.0,
        exhausted=Directive.STOP,
    )
    mailbox_capacity: ClassVar[int | None] = 100_000

    def __init__(
        self,
        *,
        directory: Directory,
        config: NotifyConfig | None = None,
        peers: Peers | None = None,
    ) -> None:
        self.directory = directory
        self.config = config or NotifyConfig()
        self.peers = peers
        self.held: dict[str, list[tuple[Any, ActorRef | None]]] = {}
        self._client: Any = None

    def started(self) -> None:
        if self.config.poster is None:
            import httpx

            client = httpx.AsyncClient(timeout=5.0, follow_redirects=False)
            self._client = client

            async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
                response = await client.post(url, content=body, headers=headers)
                return response.status_code

            self.config = _with_poster(self.config, post)

    async def stopping(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def receive(self, message: Any) -> None:
        sender = self.context.sender
        if isinstance(message, Mentioned):
            for name, text in zip(message.names, message.excerpts, strict=True):
                if name == message.author:
                    continue
                mention = _Mention(
                    user=name,
                    collection=message.collection,
                    doc=message.doc,
                    version=message.version,
                    author=message.author,
                    excerpt=text,
                )
                self.route(name, mention, None)
        elif isinstance(message, Shared | Online | UnreadChanged):
            self.route(message.user, message, sender)
        elif isinstance(message, UserFrame):
            # only to a user with sessions here; never starts a dispatcher, never stored
            child = self.context.child(_child_name(message.user))
            if child is not None and self.peers is not None and message.origin != self.peers.origin:
                child.tell(message)
        elif isinstance(message, _Passivate):
            child = self.context.child(_child_name(message.user))
            if child is not None and message.user not in self.held:
                self.held[message.user] = []
                self.context.watch(child)
                self.context.stop(child, drain=True)
        elif isinstance(message, Terminated):
            for user, held in list(self.held.items()):
                if _child_name(user) == message.actor.name:
                    del self.held[user]
                    for m, s in held:
                        self.route(user, m, s)
        else:
            self.context.unhandled(message)

    def route(self, user: str, message: Any, sender: ActorRef | None) -> None:
        held = self.held.get(user)
        if held is not None:
            held.append((message, sender))
            return
        name = _child_name(user)
        child = self.context.child(name)
        if child is None:
            try:
                child = self.context.spawn(
                    lambda: NotificationDispatcher(
                        user,
                        directory=self.directory,
                        manager=self.context.self,
                        config=self.config,
                        peers=self.peers,
                    ),
                    name=name,
                    mailbox_capacity=10_000,
                )
            except InvalidActorName:
                self.held[user] = [(message, sender)]
                return
        try:
            child.tell(message, sender)
        except MailboxFull:
            log.warning("notifications of %s are overloaded: %s dropped", user, message)


def _child_name(user: str) -> str:
    return f"u:{user}"


def _with_poster(config: NotifyConfig, poster: Poster) -> NotifyConfig:
    import dataclasses

    return dataclasses.replace(config, poster=poster)
