"""The HTTP side of observability: ``/metrics``, ``/dashboard`` and ``/dashboard/data``.

A thin starlette shell over :mod:`mailslot.observe.metrics` and :mod:`mailslot.observe.dashboard`.
The handlers read the actor system, so the app must run on the system's event loop (uvicorn in
the same process and loop, as ``mailslot serve`` does; in tests, httpx's ``ASGITransport``).
The page and its script and style are files of this package, served from memory; the page needs
nothing from the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.resources import files

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, Router

from mailslot.meters import Meters
from mailslot.observe.dashboard import Dashboard
from mailslot.observe.metrics import MetricsInstrumentation, exposition, make_registry
from mailslot.runtime import ActorSystem

__all__ = ["observe_app", "observe_routes"]

_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def _asset(name: str) -> bytes:
    return files("mailslot.observe").joinpath("web", name).read_bytes()


def observe_routes(
    system: ActorSystem,
    metrics: MetricsInstrumentation,
    *,
    meters: Meters | None = None,
    extra_gauges: Mapping[str, Callable[[], float]] | None = None,
    registry: CollectorRegistry | None = None,
    dashboard: Dashboard | None = None,
) -> list[BaseRoute]:
    """The routes, for an application that lists its routes itself.

    Args:
        system: the actor system to show.
        metrics: the :class:`MetricsInstrumentation` installed on ``system``.
        meters: the instruments of the layers above the runtime.
        extra_gauges: more figures for the dashboard (``{"documents open": fn}``).
        registry: the Prometheus registry to expose (one is made for ``system`` by default).
        dashboard: the dashboard sampler (one is made by default).
    """
    reg = registry if registry is not None else make_registry(system, metrics, meters)
    board = (
        dashboard
        if dashboard is not None
        else Dashboard(system, metrics, meters=meters, extra_gauges=extra_gauges)
    )
    page = _asset("dashboard.html")
    assets = {name: (_asset(name), media) for name, media in _ASSETS.items()}

    async def metrics_endpoint(request: Request) -> Response:
        return Response(exposition(reg), media_type=CONTENT_TYPE_LATEST)

    async def dashboard_page(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def dashboard_data(request: Request) -> Response:
        return JSONResponse(board.snapshot(), headers={"Cache-Control": "no-store"})

    async def dashboard_asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body, media = found
        return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})

    return [
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/dashboard", dashboard_page, methods=["GET"]),
        Route("/dashboard/data", dashboard_data, methods=["GET"]),
        Route("/dashboard/static/{name}", dashboard_asset, methods=["GET"]),
    ]


def observe_app(
    system: ActorSystem,
    metrics: MetricsInstrumentation,
    *,
    meters: Meters | None = None,
    extra_gauges: Mapping[str, Callable[[], float]] | None = None,
    registry: CollectorRegistry | None = None,
) -> Router:
    """An ASGI app serving ``/metrics``, ``/dashboard`` and ``/dashboard/data``.

    Mount it at the root of the server (``Mount("/", app=observe_app(...))``) or take its
    ``routes``. See :func:`observe_routes` for the arguments.
    """
    return Router(
        observe_routes(system, metrics, meters=meters, extra_gauges=extra_gauges, registry=registry)
    )
