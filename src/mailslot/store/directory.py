"""Users, document memberships, notification inboxes and webhook dead letters, beside the op log.

Theory of operation: a :class:`Directory` wraps an open :class:`~mailslot.store.Store` and keeps
its tables (created by the ``users-1-accounts`` and ``notify-1-inbox`` migrations) with the same
SQL on SQLite and PostgreSQL: reads go through the store's ``_fetch``, writes through its
``_write`` (one transaction per call). It holds no state of its own, so any number of actors may
use one directory; what must be serialised (one user's inbox) is serialised by the actor that
owns it.

Idempotency lives in the keys: a notification's id is derived by its producer from what caused
it (document, version, kind, recipient), and :meth:`Directory.add_notification` inserts it only
once, saying whether it was new. A redelivered op therefore never notifies twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import msgspec

from mailslot.errors import StoreError
from mailslot.store.base import Row, Store

__all__ = [
    "DeadDelivery",
    "Directory",
    "Membership",
    "Notification",
    "Role",
    "User",
]

Role: TypeAlias = Literal["owner", "write", "read"]
ROLES: tuple[Role, ...] = ("owner", "write", "read")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A user account; ``webhook`` is the URL its notifications are also posted to."""

    name: str
    created: int
    webhook: str | None = None


class Membership(msgspec.Struct, frozen=True, kw_only=True):
    """``user`` may reach ``collection/doc`` as ``role``."""

    collection: str
    doc: str
    user: str
    role: Role
    since: int


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a user's inbox (``read_at`` is ``None`` while unread)."""

    id: str
    user: str
    kind: str
    collection: str
    doc: str
    version: int
    author: str | None
    excerpt: str
    ts: int
    read_at: int | None = None


class DeadDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook delivery that failed for good."""

    id: str
    user: str
    notification_id: str
    url: str
    attempts: int
    error: str
    payload: Any
    ts: int


_NOTIFICATION_COLUMNS = (
    "id, user_name, kind, collection, doc, version, author, excerpt, ts, read_at"
)
_DEAD_COLUMNS = "id, user_name, notification_id, url, attempts, error, payload, ts"


def _user(row: Row) -> User:
    return User(name=row[0], created=row[1], webhook=row[2])


def _membership(row: Row) -> Membership:
    return Membership(collection=row[0], doc=row[1], user=row[2], role=row[3], since=row[4])


def _notification(row: Row) -> Notification:
    return Notification(
        id=row[0],
        user=row[1],
        kind=row[2],
        collection=row[3],
        doc=row[4],
        version=row[5],
        author=row[6],
        excerpt=row[7],
        ts=row[8],
        read_at=row[9],
    )


def _dead(row: Row) -> DeadDelivery:
    payload = row[6]
    return DeadDelivery(
        id=row[0],
        user=row[1],
        notification_id=row[2],
        url=row[3],
        attempts=row[4],
        error=row[5],
        payload=_decode(payload) if isinstance(payload, str | bytes) else payload,
        ts=row[7],
    )


class Directory:
    """Async access to users, memberships, inboxes and dead letters (see the module docstring).

    Args:
        store: an open store; the directory uses its connection(s) and never closes it.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- users -----------------------------------------------------------------------------

    async def add_user(self, name: str, *, now: int) -> bool:
        """Create ``name``; ``False`` if it exists already (nothing changes then)."""
        (count,) = await self.store._write(
            [
                (
                    "INSERT INTO users (name, created) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                    (name, now),
                )
            ]
        )
        return count == 1

    async def user(self, name: str) -> User | None:
        rows = await self.store._fetch(
            "SELECT name, created, webhook FROM users WHERE name = ?", (name,)
        )
        return _user(rows[0]) if rows else None

    async def users(self, *, limit: int = 1000) -> list[User]:
        """Every user, by name (at most ``limit``)."""
        rows = await self.store._fetch(
            "SELECT name, created, webhook FROM users ORDER BY name LIMIT ?", (limit,)
        )
        return [_user(r) for r in rows]

    async def count_users(self) -> int:
        rows = await self.store._fetch("SELECT COUNT(*) FROM users", ())
        return int(rows[0][0])

    async def set_webhook(self, name: str, url: str | None) -> bool:
        """Set (or clear, with ``None``) the user's webhook; ``False`` if there is no such user."""
        (count,) = await self.store._write(
            [("UPDATE users SET webhook = ? WHERE name = ?", (url, name))]
        )
        return count == 1

    # ---- memberships -----------------------------------------------------------------------

    async def grant(self, collection: str, doc: str, user: str, role: Role, *, now: int) -> None:
        """Give ``user`` ``role`` on the document (replacing the role it had)."""
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        await self.store._write(
            [
                (
                    "INSERT INTO members (collection, doc, user_name, role, since) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (collection, doc, user_name) "
                    "DO UPDATE SET role = excluded.role",
                    (collection, doc, user, role, now),
                )
            ]
        )

    async def revoke(self, collection: str, doc: str, user: str) -> bool:
        """Take the user's role away; ``False`` if it had none."""
        (count,) = await self.store._write(
            [
                (
                    "DELETE FROM members WHERE collection = ? AND doc = ? AND user_name = ?",
                    (collection, doc, user),
                )
            ]
        )
        return count == 1

    async def members(self, collection: str, doc: str) -> list[Membership]:
        """Who may reach the document (owners first, then by name)."""
        rows = await self.store._fetch(
            "SELECT collection, doc, user_name, role, since FROM members "
            "WHERE collection = ? AND doc = ? ORDER BY role, user_name",
            (collection, doc),
        )
        return sorted((_membership(r) for r in rows), key=lambda m: (ROLES.index(m.role), m.user))

    async def memberships(self, user: str, *, limit: int = 10_000) -> list[Membership]:
        """The documents ``user`` may reach, with its role on each."""
        rows = await self.store._fetch(
            "SELECT collection, doc, user_name, role, since FROM members "
            "WHERE user_name = ? ORDER BY collection, doc LIMIT ?",
            (user, limit),
        )
        return [_membership(r) for r in rows]

    async def role(self, collection: str, doc: str, user: str) -> Role | None:
        rows = await self.store._fetch(
            "SELECT role FROM members WHERE collection = ? AND doc = ? AND user_name = ?",
            (collection, doc, user),
        )
        return rows[0][0] if rows else None

    async def restricted(self, collection: str, doc: str) -> bool:
        """Whether the document has any member (an unowned document is open to everyone)."""
        rows = await self.store._fetch(
            "SELECT 1 FROM members WHERE collection = ? AND doc = ? LIMIT 1", (collection, doc)
        )
        return bool(rows)

    # ---- the inbox -------------------------------------------------------------------------

    async def add_notification(self, n: Notification) -> bool:
        """Store ``n`` unless its id is stored already; ``True`` if it was new."""
        (count,) = await self.store._write(
            [
                (
                    f"INSERT INTO notifications ({_NOTIFICATION_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        n.id,
                        n.user,
                        n.kind,
                        n.collection,
                        n.doc,
                        n.version,
                        n.author,
                        n.excerpt,
                        n.ts,
                        n.read_at,
                    ),
                )
            ]
        )
        return count == 1

    async def notifications(
        self, user: str, *, unread_only: bool = False, limit: int = 100
    ) -> list[Notification]:
        """The user's inbox, newest first."""
        unread = " AND read_at IS NULL" if unread_only else ""
        rows = await self.store._fetch(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE user_name = ?{unread} "
            "ORDER BY ts DESC, id DESC LIMIT ?",
            (user, limit),
        )
        return [_notification(r) for r in rows]

    async def unread_count(self, user: str) -> int:
        rows = await self.store._fetch(
            "SELECT COUNT(*) FROM notifications WHERE user_name = ? AND read_at IS NULL", (user,)
        )
        return int(rows[0][0])

    async def mark_read(self, user: str, ids: Sequence[str] | None, *, now: int) -> int:
        """Mark the user's notifications ``ids`` (all of them with ``None``) read; how many."""
        statements: list[tuple[str, tuple[Any, ...]]]
        if ids is None:
            statements = [
                (
                    "UPDATE notifications SET read_at = ? WHERE user_name = ? AND read_at IS NULL",
                    (now, user),
                )
            ]
        else:
            statements = [
                (
                    "UPDATE notifications SET read_at = ? "
                    "WHERE user_name = ? AND id = ? AND read_at IS NULL",
                    (now, user, i),
                )
                for i in ids
            ]
        if not statements:
            return 0
        return sum(await self.store._write(statements))

    # ---- webhook dead letters --------------------------------------------------------------

    async def add_dead_delivery(self, dead: DeadDelivery) -> None:
        await self.store._write(
            [
                (
                    f"INSERT INTO webhook_dead_letters ({_DEAD_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        dead.id,
                        dead.user,
                        dead.notification_id,
                        dead.url,
                        dead.attempts,
                        dead.error,
                        _encode(dead.payload).decode(),
                        dead.ts,
                    ),
                )
            ]
        )

    async def dead_deliveries(
        self, user: str | None = None, *, limit: int = 100
    ) -> list[DeadDelivery]:
        """Webhook deliveries that failed for good, newest first (one user's, or everyone's)."""
        if user is None:
            rows = await self.store._fetch(
                f"SELECT {_DEAD_COLUMNS} FROM webhook_dead_letters ORDER BY ts DESC, id LIMIT ?",
                (limit,),
            )
        else:
            rows = await self.store._fetch(
                f"SELECT {_DEAD_COLUMNS} FROM webhook_dead_letters WHERE user_name = ? "
                "ORDER BY ts DESC, id LIMIT ?",
                (user, limit),
            )
        return [_dead(r) for r in rows]
