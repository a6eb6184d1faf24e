"""Loading mailslot's optional C extensions (see ``hatch_build.py``).

Each extension is the hot path of one module, which keeps a pure-Python twin as its reference and
fallback. An extension is used when the install built it, unless its environment switch is set.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["load"]


def load(module: str, switch: str) -> ModuleType | None:
    """The extension ``module``, or ``None`` when it was not built or ``switch`` is set.

    ``switch`` is an environment variable; any value but empty or ``0`` asks for pure Python.
    """
    if os.environ.get(switch, "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
