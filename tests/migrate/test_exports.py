"""Every module of mailslot.migrate declares its surface, and the package re-exports it."""

from __future__ import annotations

import importlib

import pytest

import mailslot.migrate

MODULES = ["flags", "lockprof", "locks", "lockstats", "workloads"]


@pytest.mark.parametrize("name", MODULES)
def test_module_all_names_exist(name: str) -> None:
    module = importlib.import_module(f"mailslot.migrate.{name}")
    assert module.__all__
    assert all(hasattr(module, attr) for attr in module.__all__)


def test_package_reexports() -> None:
    assert sorted(mailslot.migrate.__all__) == mailslot.migrate.__all__
    for attr in mailslot.migrate.__all__:
        assert getattr(mailslot.migrate, attr) is not None
    assert (
        mailslot.migrate.profile_call
        is importlib.import_module("mailslot.migrate.locks").profile_call
    )
