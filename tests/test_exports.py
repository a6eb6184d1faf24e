"""Every public module declares ``__all__``, and packages re-export explicitly."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import mailslot

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(mailslot.__path__, "mailslot.")
    if not m.name.rsplit(".", 1)[-1].startswith("_")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_all_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []
    assert len(set(exported)) == len(exported)


def test_runtime_package_reexports_the_public_api() -> None:
    import mailslot.runtime as rt

    for name in (
        "Actor",
        "ActorRef",
        "ActorSystem",
        "SupervisorStrategy",
        "DeadLetter",
        "droppable",
    ):
        assert name in rt.__all__
