"""The database schema, as an ordered list of migrations applied on start.

Theory of operation: every database has a ``schema_migrations`` table with the id of each
migration applied to it. When a store opens, it takes the database's write lock (SQLite's
``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), reads the applied ids, and applies every migration
of :data:`MIGRATIONS` not applied yet, in list order, each recording its id, all in that one
transaction. Opening twice, or from several processes at once, applies each migration once.

Adding a migration (the users and notifications layers will): append one to :data:`MIGRATIONS`
with a new id (``"<layer>-<n>-<what>"``, e.g. ``"users-1-accounts"``), usually with
:func:`portable` (one set of statements for both backends), otherwise as a :class:`Migration` with
the statements of each backend. For example::

    portable(
        "users-1-accounts",
        "CREATE TABLE users (name TEXT PRIMARY KEY, created {int} NOT NULL, profile {json})",
    ),

Never edit, reorder or remove a migration that has shipped: write a new one that changes what it
did. Ids, not positions, decide what is applied, so migrations appended on two branches merge by
keeping both. A database that records an id this code does not know was migrated by a newer
mailslot, and the store refuses to open it. ``tests/store`` runs every migration on both backends.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import msgspec

from mailslot.errors import StoreError

__all__ = ["MIGRATIONS", "Migration", "pending_migrations", "portable"]


class Migration(msgspec.Struct, frozen=True, kw_only=True):
    """One step of the schema.

    Attributes:
        id: unique and stable forever; recorded in ``schema_migrations``.
        sqlite: the statements for SQLite, run in order.
        postgres: the statements for PostgreSQL, run in order (unqualified names land in the
            store's schema through ``search_path``).
    """

    id: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_DIALECTS = {
    "sqlite": {"int": "INTEGER", "json": "TEXT", "without_rowid": " WITHOUT ROWID"},
    "postgres": {"int": "BIGINT", "json": "JSON", "without_rowid": ""},
}


def portable(id: str, *statements: str) -> Migration:
    """A migration whose statements suit both backends once the column types are filled in.

    In ``statements``, ``{int}`` is a 64-bit integer column type, ``{json}`` a JSON column type and
    ``{without_rowid}`` SQLite's ``WITHOUT ROWID`` table option (nothing on PostgreSQL). Write a
    :class:`Migration` by hand when the backends need different SQL.
    """
    sqlite, postgres = (
        tuple(statement.format(**types) for statement in statements) for types in _DIALECTS.values()
    )
    return Migration(id=id, sqlite=sqlite, postgres=postgres)


MIGRATIONS: tuple[Migration, ...] = (
    portable(
        "store-1-oplog",
        """CREATE TABLE documents (
            collection TEXT NOT NULL,
            doc TEXT NOT NULL,
            version {int} NOT NULL CHECK (version >= 0),
            created {int} NOT NULL,
            updated {int} NOT NULL,
            PRIMARY KEY (collection, doc)
        ){without_rowid}""",
        """CREATE TABLE ops (
            collection TEXT NOT NULL,
            doc TEXT NOT NULL,
            version {int} NOT NULL CHECK (version >= 0),
            src TEXT NOT NULL,
            seq {int} NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('op', 'create', 'del')),
            op {json} NOT NULL,
            ts {int} NOT NULL,
            user_id TEXT,
            PRIMARY KEY (collection, doc, version),
            UNIQUE (collection, doc, src, seq)
        )""",
        """CREATE TABLE snapshots (
            collection TEXT NOT NULL,
            doc TEXT NOT NULL,
            version {int} NOT NULL CHECK (version >= 0),
            doc_type TEXT,
            data {json} NOT NULL,
            ts {int} NOT NULL,
            PRIMARY KEY (collection, doc, version)
        )""",
    ),
    portable(
        "users-1-accounts",
        """CREATE TABLE users (
            name TEXT PRIMARY KEY,
            created {int} NOT NULL,
            webhook TEXT
        )""",
        """CREATE TABLE members (
            collection TEXT NOT NULL,
            doc TEXT NOT NULL,
            user_name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('owner', 'write', 'read')),
            since {int} NOT NULL,
            PRIMARY KEY (collection, doc, user_name)
        )""",
        "CREATE INDEX members_by_user ON members (user_name, collection, doc)",
    ),
    portable(
        "notify-1-inbox",
        """CREATE TABLE notifications (
            id TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            collection TEXT NOT NULL,
            doc TEXT NOT NULL,
            version {int} NOT NULL,
            author TEXT,
            excerpt TEXT NOT NULL,
            ts {int} NOT NULL,
            read_at {int}
        )""",
        "CREATE INDEX notifications_by_user ON notifications (user_name, ts)",
        """CREATE TABLE webhook_dead_letters (
            id TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            notification_id TEXT NOT NULL,
            url TEXT NOT NULL,
            attempts {int} NOT NULL,
            error TEXT NOT NULL,
            payload {json} NOT NULL,
            ts {int} NOT NULL
        )""",
        "CREATE INDEX webhook_dead_letters_by_user ON webhook_dead_letters (user_name, ts)",
    ),
)
"""Every migration, in the order they apply. Append only."""


def pending_migrations(
    applied: Collection[str], migrations: Sequence[Migration] = MIGRATIONS
) -> list[Migration]:
    """The migrations still to apply, in order.

    Args:
        applied: the ids recorded in the database's ``schema_migrations``.
        migrations: the known migrations (all of them by default).

    Raises:
        StoreError: the database records a migration this code does not know (it was migrated by
            a newer mailslot), or two known migrations share an id.
    """
    known = [m.id for m in migrations]
    if len(set(known)) != len(known):
        twice = sorted({i for i in known if known.count(i) > 1})
        raise StoreError(f"migration ids used twice: {', '.join(twice)}")
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise StoreError(
            "the database was migrated by a newer mailslot: unknown migrations "
            + ", ".join(unknown)
        )
    return [m for m in migrations if m.id not in applied]
