"""``python -m mailslot``: the same as the ``mailslot`` command."""

from __future__ import annotations

import sys

from mailslot.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
