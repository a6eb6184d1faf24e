"""The cutover's switches: ``GET``/``PUT /api/cutover``, ``mailslot cutover``, ``serve --engine``.

- ``GET /api/cutover``: the flags and what each engine did (:class:`CutoverStatistics` as JSON).
- ``PUT /api/cutover``: replace the flags with the JSON body (a :class:`FlagConfig`); documents
  whose engine changes move between ops (see :mod:`mailslot.migrate.cutover`). A bad body is a 400
  naming the field. Both answer 404 when the server runs the actor engine alone.
- ``mailslot cutover show`` and ``mailslot cutover set --percentage 10 ...``: the same over HTTP
  from a shell (``set`` reads the flags, changes what it is told, and puts them back).
- ``mailslot serve --engine legacy|cutover --flags JSON --plant-deadlock --stall-timeout S``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailslot.errors import AskTimeout, ConfigError
from mailslot.legacy import LegacyConfig
from mailslot.migrate.cutover import CutoverConfig, GetCutover, SetFlags
from mailslot.migrate.flags import FlagConfig, parse_config
from mailslot.runtime import ActorRef

__all__ = ["add_cli", "add_serve_arguments", "routes", "run_cli", "serve_options"]

_OFF = {"error": "the cutover is off: start mailslot serve with --engine legacy or cutover"}


def routes(router: Callable[[], ActorRef | None], *, timeout: float) -> list[Route]:
    """The REST routes; ``router()`` answers the running router, or ``None``."""

    async def ask(message: Any) -> Response:
        ref = router()
        if ref is None:
            return JSONResponse(_OFF, status_code=404)
        try:
            stats = await ref.ask(message, timeout=timeout)
        except AskTimeout as exc:
            return JSONResponse({"error": f"the cutover did not answer: {exc}"}, status_code=503)
        return JSONResponse(msgspec.to_builtins(stats))

    async def show(request: Request) -> Response:
        return await ask(GetCutover())

    async def replace(request: Request) -> Response:
        try:
            flags = parse_config(await request.body())
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await ask(SetFlags(flags))

    return [
        Route("/api/cutover", show, methods=["GET"]),
        Route("/api/cutover", replace, methods=["PUT"]),
    ]


# ---- mailslot serve ---------------------------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The engine options of ``mailslot serve``."""
    parser.add_argument(
        "--engine",
        choices=["actor", "legacy", "cutover"],
        default="actor",
        help="actor: the actor engine alone (default); legacy/cutover: both engines behind the "
        "cutover flags (GET/PUT /api/cutover), starting on the old engine unless --flags say else",
    )
    parser.add_argument(
        "--flags", default=None, help='the cutover flags at start, as JSON ({"enabled": true, ...})'
    )
    parser.add_argument(
        "--plant-deadlock",
        action="store_true",
        help="turn on the old engine's planted lock-order bug (it deadlocks under load)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=None,
        help="restart the old engine when a request is stuck this many seconds (off by default)",
    )
    parser.add_argument(
        "--legacy-workers", type=int, default=32, help="the old engine's worker threads (32)"
    )
    parser.add_argument(
        "--no-shadow",
        action="store_true",
        help="do not start the shadow engines (shadow mode then compares nothing)",
    )


def serve_options(args: argparse.Namespace) -> dict[str, Any]:
    """``NodeConfig`` keyword arguments from the options above.

    Raises:
        ConfigError: bad flags JSON or engine settings, naming what is wrong.
    """
    if args.engine == "actor":
        if args.flags is not None or args.plant_deadlock:
            raise ConfigError("--flags and --plant-deadlock need --engine legacy or cutover")
        return {}
    return {
        "engine": args.engine,
        "flags": parse_config(args.flags) if args.flags is not None else None,
        "legacy": LegacyConfig(
            workers=args.legacy_workers,
            lock_order_bug=args.plant_deadlock,
            stall_timeout=args.stall_timeout,
        ),
        "cutover": CutoverConfig(shadow=not args.no_shadow),
    }


# ---- mailslot cutover -------------------------------------------------------------------------


def add_cli(subparsers: Any) -> None:
    """``mailslot cutover show|set``."""
    cutover = subparsers.add_parser(
        "cutover",
        help="show or change which engine serves which documents on a running server",
        description="Talks to a running `mailslot serve --engine cutover` over its REST API.",
    )
    actions = cutover.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for name, text in (("show", "print the flags and each engine's figures"), ("set", "change")):
        p = actions.add_parser(name, help=text)
        p.add_argument("--url", default="http://127.0.0.1:8000", help="the server (:8000)")
    s = actions.choices["set"]
    toggle = s.add_mutually_exclusive_group()
    toggle.add_argument("--enable", dest="enabled", action="store_true", default=None)
    toggle.add_argument("--disable", dest="enabled", action="store_false")
    s.add_argument("--percentage", type=int, help="share of documents on the actor engine")
    s.add_argument("--kill-switch", choices=["on", "off"], help="on: everything back to legacy")
    s.add_argument("--shadow", choices=["on", "off"], help="compare against the other engine")
    s.add_argument("--group-id", help="the rollout's group id (reshuffles the buckets)")
    for what in ("allow-doc", "allow-user", "deny-doc", "deny-user"):
        s.add_argument(
            f"--{what}", action="append", default=[], metavar="ID", help=f"add to {what}"
        )
    s.add_argument("--clear-lists", action="store_true", help="empty the allow and deny lists")
    s.add_argument("--json", help="replace the whole flag configuration with this JSON")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``mailslot cutover``; exit status 1 when the server cannot be reached or refuses."""
    url = args.url.rstrip("/") + "/api/cutover"
    try:
        if args.action == "show":
            result = _http("GET", url)
        else:
            flags = _changed(_http("GET", url)["flags"], args)
            result = _http("PUT", url, msgspec.json.encode(flags))
    except _Refused as exc:
        print(f"mailslot cutover: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _changed(current: dict[str, Any], args: argparse.Namespace) -> FlagConfig:
    if args.json is not None:
        return parse_config(args.json)
    flags = dict(current)
    if args.clear_lists:
        for name in ("allow_docs", "allow_users", "deny_docs", "deny_users"):
            flags[name] = []
    for name in ("allow_doc", "allow_user", "deny_doc", "deny_user"):
        added = getattr(args, name)
        if added:
            flags[name + "s"] = sorted({*flags.get(name + "s", []), *added})
    if args.enabled is not None:
        flags["enabled"] = args.enabled
    if args.percentage is not None:
        flags["percentage"] = args.percentage
    if args.kill_switch is not None:
        flags["kill_switch"] = args.kill_switch == "on"
    if args.shadow is not None:
        flags["shadow"] = args.shadow == "on"
    if args.group_id is not None:
        flags["group_id"] = args.group_id
    return parse_config(flags)


class _Refused(Exception):
    pass


def _http(method: str, url: str, body: bytes | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise _Refused(f"{method} {url}: {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Refused(f"cannot reach {url}: {exc}") from None
