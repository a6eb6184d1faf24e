"""The ``mailslot`` command: ``mailslot demo``, ``mailslot bench <suite>``, and more as layers land.

Every bad argument gets a one-line error naming what was wrong and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from mailslot.errors import ConfigError, MailslotError

__all__ = ["main"]

#: subcommands whose module parses its own options and runs them (``run_cli(args)``)
_RUNNERS = {
    "cluster": "mailslot.cluster.cli",
    "cutover": "mailslot.migrate.cutover_http",
    "lockprof": "mailslot.migrate.lockprof",
    "user": "mailslot.accounts",
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailslot", description="Message passing for Python: actors, cluster, collaboration."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser("demo", help="a short, narrated demonstration of the actor runtime")
    demo.add_argument("--seed", type=int, default=7, help="seed for the backoff jitter")
    serve = sub.add_parser(
        "serve",
        help="run the collaboration server",
        description="Run one node of the collaboration service: WebSocket at /ws, REST at /api.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--db",
        default="sqlite:///./data/mailslot.db",
        help="sqlite:///path/file.db (default sqlite:///./data/mailslot.db) or "
        "postgresql://user@host:port/db",
    )
    serve.add_argument(
        "--broker",
        default=None,
        help="join a cluster through RabbitMQ (amqp://guest:guest@127.0.0.1:5672/); memory:// "
        "runs the same cluster wiring over the in-process transport (one process)",
    )
    serve.add_argument("--node-id", default=None, help="this node's id in the cluster")
    serve.add_argument("--cluster-prefix", default="mailslot", help="broker name prefix")
    serve.add_argument("--shards", type=int, default=64, help="shards of the cluster (64)")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the lowest level logged (debug also logs every actor message)",
    )
    serve.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="JSON lines, or a console format (auto: console in a terminal)",
    )
    serve.add_argument(
        "--no-dev-login",
        action="store_true",
        help="turn off name-only sign-in and anonymous sockets (tokens from 'mailslot user add')",
    )
    from mailslot.migrate import cutover_http

    cutover_http.add_serve_arguments(serve)
    cutover_http.add_cli(sub)
    bench = sub.add_parser("bench", help="run a benchmark suite (mailslot bench SUITE --help)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    from mailslot.migrate import lockprof

    lockprof.add_cli(sub)
    from mailslot.cluster import cli as cluster_cli

    cluster_cli.add_cli(sub)
    from mailslot import accounts

    accounts.add_cli(sub)
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {port}")
    return port


def _serve(args: argparse.Namespace) -> int:
    from mailslot.observe import configure_logging
    from mailslot.server import NodeConfig, serve
    from mailslot.store import parse_url

    json = {"auto": None, "json": True, "console": False}[args.log_format]
    configure_logging(args.log_level, json=json)

    from mailslot.migrate.cutover_http import serve_options

    try:
        parse_url(args.db)
        engine = serve_options(args)
    except ConfigError as exc:
        print(f"mailslot serve: error: {exc}", file=sys.stderr)
        return 2

    def ready(url: str) -> None:
        print(f"mailslot is serving on {url}  (WebSocket {url.replace('http', 'ws')}/ws)")
        if not args.no_dev_login:
            print("dev login is ON: anyone may sign in by name (--no-dev-login turns it off)")
        print(f"database: {args.db}; press Ctrl-C to stop")
        sys.stdout.flush()

    try:
        config = NodeConfig(
            host=args.host,
            port=args.port,
            db=args.db,
            broker=args.broker,
            node_id=args.node_id,
            cluster_prefix=args.cluster_prefix,
            shards=args.shards,
            dev_login=not args.no_dev_login,
            **engine,
        )
        _run(serve(config, ready=ready))
    except ConfigError as exc:
        print(f"mailslot serve: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, MailslotError) as exc:
        print(f"mailslot serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(coro: Any) -> Any:
    """Run on uvloop when it is installed (about half the latency of the default loop)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the default extras
        return asyncio.run(coro)
    return uvloop.run(coro)


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
    if args.command == "serve":
        return _serve(args)
    runner = _RUNNERS.get(args.command)
    if runner is not None:
        try:
            return int(importlib.import_module(runner).run_cli(args))
        except ConfigError as exc:
            print(f"mailslot {args.command}: error: {exc}", file=sys.stderr)
            return 2
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
