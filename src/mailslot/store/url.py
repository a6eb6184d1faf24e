"""Database URLs: which store ``--db`` names, and opening it.

Accepted (the SQLAlchemy spelling for SQLite paths):

- ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: a file, its directory
  created on open; the default is :data:`DEFAULT_URL`, a file under ``./data``;
- ``sqlite:///:memory:``: a database in memory, gone when closed (tests);
- ``postgresql://user[:password]@host[:port]/database[?schema=name&...]`` (or ``postgres://``):
  a PostgreSQL database through asyncpg (the ``postgres`` extra); ``schema`` is mailslot's own
  parameter (the schema that holds the tables, ``public`` by default), any other parameter goes to
  asyncpg.

Anything else is a :class:`~mailslot.errors.ConfigError` that names the part that is wrong. Error
messages never show a password.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import msgspec

from mailslot.errors import ConfigError
from mailslot.store.base import Store

__all__ = ["DEFAULT_URL", "SCHEMA_NAME", "StoreConfig", "open_store", "parse_url"]

DEFAULT_URL = "sqlite:///./data/mailslot.db"
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A PostgreSQL schema name mailslot accepts: plain lower-case, no quoting needed."""

_EXAMPLES = "sqlite:///path/file.db, sqlite:///:memory: or postgresql://user@host:port/database"


class StoreConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed database URL.

    Attributes:
        engine: ``"sqlite"`` or ``"postgresql"``.
        display: the URL with any password hidden, for messages.
        path: SQLite: the file, or ``":memory:"``.
        dsn: PostgreSQL: the URL for asyncpg (without ``schema``).
        schema: PostgreSQL: the schema that holds the tables.
    """

    engine: Literal["sqlite", "postgresql"]
    display: str
    path: str = ""
    dsn: str = ""
    schema: str = "public"


def _display(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url


def parse_url(url: str) -> StoreConfig:
    """Parse a database URL (see the module docstring).

    Raises:
        ConfigError: the URL is not one of the accepted forms; the message names the bad part.
    """
    shown = _display(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"database URL {shown!r} does not parse: {exc}") from exc
    scheme = parts.scheme.lower()
    if not scheme:
        raise ConfigError(f"database URL {shown!r} has no scheme; use {_EXAMPLES}")
    if scheme == "sqlite":
        return _sqlite(parts.netloc, parts.path, parts.query, parts.fragment, shown)
    if scheme in {"postgresql", "postgres"}:
        return _postgres(url, shown)
    raise ConfigError(f"database URL {shown!r}: unsupported scheme {scheme!r}; use {_EXAMPLES}")


def _sqlite(netloc: str, path: str, query: str, fragment: str, shown: str) -> StoreConfig:
    if netloc:
        raise ConfigError(
            f"database URL {shown!r}: SQLite takes no host ({netloc!r}); write "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if query or fragment:
        extra = query or fragment
        raise ConfigError(f"database URL {shown!r}: SQLite takes no parameters ({extra!r})")
    file = unquote(path[1:] if path.startswith("/") else path)
    if not file or file.endswith("/"):
        raise ConfigError(f"database URL {shown!r} names no SQLite file after 'sqlite:///'")
    return StoreConfig(engine="sqlite", display=shown, path=file)


def _postgres(url: str, shown: str) -> StoreConfig:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 -- urllib checks the port only when it is read
    except ValueError as exc:
        raise ConfigError(f"database URL {shown!r}: bad port ({exc})") from exc
    if parts.path.count("/") > 1:
        raise ConfigError(
            f"database URL {shown!r}: the database name {parts.path[1:]!r} contains '/'"
        )
    params = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in params if key == "schema"]
    if len(schemas) > 1:
        raise ConfigError(f"database URL {shown!r}: 'schema' given {len(schemas)} times")
    schema = schemas[0] if schemas else "public"
    if not SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"database URL {shown!r}: schema {schema!r} is not a plain lower-case name "
            "(letters, digits, '_'; at most 63)"
        )
    rest = urlencode([(k, v) for k, v in params if k != "schema"])
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=rest, fragment=""))
    return StoreConfig(engine="postgresql", display=shown, dsn=dsn, schema=schema)


def open_store(url: str = DEFAULT_URL) -> Store:
    """The store a database URL names, not opened yet: ``async with open_store(url) as store:``.

    Raises:
        ConfigError: a bad URL, or PostgreSQL without asyncpg installed.
    """
    config = parse_url(url)
    if config.engine == "sqlite":
        from mailslot.store.sqlite import SqliteStore

        return SqliteStore(config.path)
    try:
        from mailslot.store.postgres import PostgresStore
    except ImportError as exc:
        raise ConfigError(
            f"database URL {config.display!r} needs asyncpg: pip install 'mailslot[postgres]'"
        ) from exc
    return PostgresStore(config.dsn, schema=config.schema, display=config.display)
