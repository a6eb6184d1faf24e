"""The ``mailslot`` command: ``mailslot demo``, ``mailslot bench <suite>``, and more as layers land.

Every bad argument gets a one-line error naming what was wrong and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mailslot.errors import ConfigError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailslot", description="Message passing for Python: actors, cluster, collaboration."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser("demo", help="a short, narrated demonstration of the actor runtime")
    demo.add_argument("--seed", type=int, default=7, help="seed for the backoff jitter")
    bench = sub.add_parser("bench", help="run a benchmark suite (mailslot bench SUITE --help)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    from mailslot.migrate import lockprof

    lockprof.add_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mailslot`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    # `bench` parses its own options because each suite adds some.
    if args_list[:1] == ["bench"]:
        from mailslot import bench

        try:
            return bench.main(args_list[1:])
        except ConfigError as exc:
            print(f"mailslot bench: error: {exc}", file=sys.stderr)
            return 2
    args = parser.parse_args(args_list)
    if args.command == "demo":
        from mailslot import demo

        return demo.main(seed=args.seed)
    if args.command == "lockprof":
        from mailslot.migrate import lockprof

        try:
            return lockprof.run_cli(args)
        except ConfigError as exc:
            print(f"mailslot lockprof: error: {exc}", file=sys.stderr)
            return 2
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
