from __future__ import annotations

import pytest

from mailslot.errors import StoreError
from mailslot.store import MIGRATIONS, Migration, portable
from mailslot.store.migrations import pending_migrations

A = Migration(id="a-1", sqlite=("s",), postgres=("p",))
B = Migration(id="b-1", sqlite=("s",), postgres=("p",))


def test_pending_keeps_list_order_and_skips_applied() -> None:
    assert pending_migrations(set(), [A, B]) == [A, B]
    assert pending_migrations({"a-1"}, [A, B]) == [B]
    assert pending_migrations({"b-1"}, [A, B]) == [A]  # merged branches: ids decide, not places
    assert pending_migrations({"a-1", "b-1"}, [A, B]) == []


def test_a_database_from_a_newer_mailslot_is_refused() -> None:
    with pytest.raises(StoreError, match="newer mailslot: unknown migrations c-1, d-1"):
        pending_migrations({"a-1", "d-1", "c-1"}, [A, B])


def test_ids_are_unique() -> None:
    with pytest.raises(StoreError, match="migration ids used twice: a-1"):
        pending_migrations(set(), [A, B, A])
    ids = [m.id for m in MIGRATIONS]
    assert len(ids) == len(set(ids))


def test_every_migration_has_statements_for_both_backends() -> None:
    for migration in MIGRATIONS:
        assert migration.sqlite, migration.id
        assert len(migration.sqlite) == len(migration.postgres), migration.id


def test_portable_fills_in_each_backends_types() -> None:
    m = portable("x-1", "CREATE TABLE t (n {int}, j {json}){without_rowid}", "DROP TABLE u")
    assert m.sqlite == ("CREATE TABLE t (n INTEGER, j TEXT) WITHOUT ROWID", "DROP TABLE u")
    assert m.postgres == ("CREATE TABLE t (n BIGINT, j JSON)", "DROP TABLE u")
