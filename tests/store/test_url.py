from __future__ import annotations

import re

import pytest

from mailslot.errors import ConfigError
from mailslot.store import DEFAULT_URL, StoreConfig, open_store, parse_url
from mailslot.store.postgres import PostgresStore
from mailslot.store.sqlite import SqliteStore


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (DEFAULT_URL, "./data/mailslot.db"),
        ("sqlite:///relative/file.db", "relative/file.db"),
        ("sqlite:////var/lib/mailslot/file.db", "/var/lib/mailslot/file.db"),
        ("SQLITE:///with%20space.db", "with space.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert parse_url(url) == StoreConfig(engine="sqlite", display=url, path=path)


def test_postgresql_urls() -> None:
    config = parse_url("postgresql://ann:secret@db.example:6543/mail?schema=ms_1&sslmode=disable")
    assert config.engine == "postgresql"
    assert config.schema == "ms_1"
    assert config.dsn == "postgresql://ann:secret@db.example:6543/mail?sslmode=disable"
    assert config.display == "postgresql://ann:***@db.example:6543/mail?schema=ms_1&sslmode=disable"
    plain = parse_url("postgres://root@127.0.0.1/test")
    assert (plain.dsn, plain.schema) == ("postgresql://root@127.0.0.1/test", "public")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "unsupported scheme 'mysql'"),
        ("postgresql+asyncpg://u@h/db", "unsupported scheme 'postgresql+asyncpg'"),
        ("data/mailslot.db", "has no scheme"),
        ("sqlite://host/file.db", "SQLite takes no host ('host')"),
        ("sqlite:///", "names no SQLite file"),
        ("sqlite:///data/", "names no SQLite file"),
        ("sqlite://", "names no SQLite file"),
        ("sqlite:///f.db?mode=ro", "SQLite takes no parameters ('mode=ro')"),
        ("postgresql://u@h:99999/db", "bad port"),
        ("postgresql://u@h:abc/db", "bad port"),
        ("postgresql://u@h/db/extra", "database name 'db/extra' contains '/'"),
        ("postgresql://u@h/db?schema=Bad-Name", "schema 'Bad-Name' is not a plain lower-case"),
        ("postgresql://u@h/db?schema=a&schema=b", "'schema' given 2 times"),
    ],
)
def test_bad_urls_name_the_bad_part(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_url(url)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url("postgresql://ann:hunter2@h:70000/db")
    assert "hunter2" not in str(caught.value)
    assert "ann:***@" in str(caught.value)


def test_open_store_picks_the_backend(tmp_path) -> None:
    sqlite = open_store(f"sqlite:///{tmp_path}/a/b.db")
    assert isinstance(sqlite, SqliteStore)
    assert sqlite.path == f"{tmp_path}/a/b.db"
    postgres = open_store("postgresql://u@h/db?schema=s1")
    assert isinstance(postgres, PostgresStore)
    assert postgres.schema == "s1"
    assert "u@h" in repr(postgres)
    with pytest.raises(ConfigError, match="not a plain lower-case name"):
        PostgresStore("postgresql://u@h/db", schema='x"; DROP')


async def test_sqlite_creates_the_directory(tmp_path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/new/dir/m.db") as store:
        assert await store.migrations() != []
    assert (tmp_path / "new" / "dir" / "m.db").is_file()
