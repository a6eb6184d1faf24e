"""``make run`` until the collaboration server lands: a narrated tour of the runtime."""

from __future__ import annotations

__all__ = ["main"]


def main(*, seed: int = 7) -> int:
    print(f"mailslot demo (seed {seed}): the runtime lands in the next commit.")
    return 0
