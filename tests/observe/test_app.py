"""The HTTP endpoints: /metrics, /dashboard (page, script, style) and /dashboard/data."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

import httpx

from mailslot.meters import Meters
from mailslot.observe.app import observe_app
from mailslot.observe.metrics import MetricsInstrumentation
from mailslot.runtime import Actor
from mailslot.testing import TestKit


class Worker(Actor):
    def receive(self, message: Any) -> None:
        pass


def client(app: Any) -> httpx.AsyncClient:
    # the app reads the actor system, so it runs on the test's loop (not TestClient's thread)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_metrics_dashboard_and_data() -> None:
    metrics = MetricsInstrumentation()
    meters = Meters()
    async with TestKit(instrumentation=metrics) as kit:
        app = observe_app(kit.system, metrics, meters=meters, extra_gauges={"documents": lambda: 3})
        w = kit.system.spawn(Worker)
        for i in range(12):
            w.tell(i)
        await kit.settle()
        async with client(app) as http:
            r = await http.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            assert 'mailslot_actor_messages_processed_total{actor_type="Worker"} 12.0' in r.text

            page = await http.get("/dashboard")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
            for src in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page.text):
                asset = await http.get(src)
                assert asset.status_code == 200
                assert asset.content
            assert (await http.get("/dashboard/static/nope.js")).status_code == 404

            data = (await http.get("/dashboard/data")).json()
            assert data["gauges"]["documents"] == 3
            assert data["gauges"]["sessions"] == 0
            worker = next(t for t in data["types"] if t["actor_type"] == "Worker")
            assert worker["processed"] == 12


async def test_the_page_script_reads_only_fields_the_data_has() -> None:
    metrics = MetricsInstrumentation()
    async with TestKit(instrumentation=metrics) as kit:
        kit.system.spawn(Worker).tell(1)
        await kit.settle()
        async with client(observe_app(kit.system, metrics)) as http:
            data = (await http.get("/dashboard/data")).json()
    script = files("mailslot.observe").joinpath("web", "dashboard.js").read_text()
    type_fields = set(re.findall(r"\bt\.([a-z_0-9]+)", script))
    known = set(data["types"][0]) | set(data["totals"])
    assert type_fields
    assert type_fields <= known
    top_fields = set(re.findall(r"\bd\.([a-z_]+)", script))
    assert top_fields <= set(data)
