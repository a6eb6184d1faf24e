from __future__ import annotations

import importlib
import pkgutil

import mailslot.store


def test_package_exports_exactly_its_all() -> None:
    public = {n for n in vars(mailslot.store) if not n.startswith("_")}
    modules = {m.name for m in pkgutil.iter_modules(mailslot.store.__path__)}
    assert public - modules - {"annotations"} == set(mailslot.store.__all__)


def test_every_module_declares_all_and_defines_it() -> None:
    for info in pkgutil.iter_modules(mailslot.store.__path__):
        module = importlib.import_module(f"mailslot.store.{info.name}")
        assert module.__doc__, info.name
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name}"
