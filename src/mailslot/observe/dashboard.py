"""The live dashboard's data: one JSON snapshot of the system, with rates and percentiles.

Theory of operation
-------------------
:class:`Dashboard` samples the system (through :func:`~mailslot.observe.metrics.type_views`, one
pass over the live actors) at most once per ``min_interval`` seconds, however many pages poll it,
and keeps a short history of samples. From two samples it derives:

- messages per second per actor type: processed-count difference over the last interval;
- processing-time percentiles (p50, p90, p99) per type: the histogram's bucket counts
  *added during the last* ``window`` *seconds*, interpolated inside buckets as Prometheus'
  ``histogram_quantile`` does (so they are as coarse as the buckets, and sampled: see
  :mod:`mailslot.observe.metrics`);
- an actor type is *hot* when its fullest mailbox is at or above the high watermark (the point
  where the runtime starts telling senders to slow down) or its p99 is at or above ``slow_p99``.

:func:`build_snapshot` is the pure part: views and previous samples in, a JSON-ready dict out.
Times are passed in (a monotonic ``now`` for rates, a wall-clock ``wall`` for display).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailslot.meters import Gauge, Meters, quantile
from mailslot.observe.metrics import MetricsInstrumentation, TypeView, type_views
from mailslot.runtime import ActorSystem

__all__ = ["Dashboard", "Sample", "build_snapshot", "take_sample"]

log = logging.getLogger("mailslot.observe")

_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


@dataclass(frozen=True, slots=True)
class Sample:
    """What a later snapshot needs from an earlier one."""

    time: float
    processed: Mapping[str, int]
    histograms: Mapping[str, tuple[int, ...]]
    dispatched: int


def take_sample(now: float, views: Sequence[TypeView], dispatched: int) -> Sample:
    return Sample(
        now,
        {v.actor_type: v.processed for v in views},
        {v.actor_type: v.histogram_counts for v in views},
        dispatched,
    )


def _delta(new: Sequence[int], old: Sequence[int] | None) -> list[int]:
    if old is None or len(old) != len(new):
        return list(new)
    return [a - b for a, b in zip(new, old, strict=True)]


def build_snapshot(
    *,
    now: float,
    wall: float,
    system_name: str,
    views: Sequence[TypeView],
    dispatched: int,
    dead_letters: Mapping[str, int],
    dead_letters_by_type: Mapping[str, int],
    slow_downs_by_type: Mapping[str, int],
    gauges: Mapping[str, float | None],
    previous: Sample | None,
    window_start: Sample | None,
    buckets: Sequence[float],
    hot_fill: float,
    slow_p99: float,
) -> dict[str, Any]:
    """The dashboard's JSON document (see the module docs for the figures).

    ``previous`` is the sample rates are computed against; ``window_start`` the one percentiles
    are computed against (both ``None`` on the first snapshot: rates are then ``None`` and
    percentiles cover everything since start).
    """
    dt = now - previous.time if previous is not None else 0.0
    types: list[dict[str, Any]] = []
    for v in views:
        active = (
            v.actors
            or v.processed
            or v.failures
            or dead_letters_by_type.get(v.actor_type)
            or v.histogram_count
        )
        if not active:
            continue
        rate = None
        if previous is not None and dt > 0:
            rate = max(0, v.processed - previous.processed.get(v.actor_type, 0)) / dt
        old_hist = window_start.histograms.get(v.actor_type) if window_start is not None else None
        counts = _delta(v.histogram_counts, old_hist)
        pct = {k: quantile(q, buckets, counts) for k, q in _QUANTILES}
        reasons = []
        if v.actors and v.fill_ratio >= hot_fill:
            reasons.append("mailbox")
        p99 = pct["p99"]
        if p99 is not None and p99 >= slow_p99:
            reasons.append("slow")
        types.append(
            {
                "actor_type": v.actor_type,
                "actors": v.actors,
                "mailbox_depth": v.mailbox_depth,
                "mailbox_depth_max": v.mailbox_depth_max,
                "mailbox_capacity": v.mailbox_capacity,
                "mailbox_high_water": v.mailbox_high_water,
                "fill_ratio": v.fill_ratio,
                "throttled_senders": v.throttled_senders,
                "processed": v.processed,
                "messages_per_sec": rate,
                **pct,
                "samples": sum(counts),
                "failures": v.failures,
                "restarts": v.restarts,
                "dead_letters": dead_letters_by_type.get(v.actor_type, 0),
                "slow_downs": slow_downs_by_type.get(v.actor_type, 0),
                "hot": bool(reasons),
                "hot_reasons": reasons,
            }
        )
    # hot first, then the busiest
    types.sort(key=lambda t: (not t["hot"], -(t["messages_per_sec"] or 0), t["actor_type"]))
    total_rate = None
    if previous is not None and dt > 0:
        total_rate = max(0, dispatched - previous.dispatched) / dt
    return {
        "system": system_name,
        "time": wall,
        "interval": dt if previous is not None else None,
        "totals": {
            "actors": sum(v.actors for v in views),
            "processed": sum(v.processed for v in views),
            "messages_per_sec": total_rate,
            "failures": sum(v.failures for v in views),
            "restarts": sum(v.restarts for v in views),
            "dead_letters": sum(dead_letters.values()),
            "mailbox_depth": sum(v.mailbox_depth for v in views),
        },
        "types": types,
        "dead_letters": dict(sorted(dead_letters.items())),
        "gauges": dict(gauges),
        "thresholds": {"fill_ratio": hot_fill, "p99_seconds": slow_p99},
    }


class Dashboard:
    """Samples a system for the live page; :meth:`snapshot` is what ``/dashboard/data`` serves.

    Args:
        system: the actor system.
        metrics: the :class:`MetricsInstrumentation` installed on it.
        meters: the upper layers' instruments; their unlabelled gauges (documents open,
            sessions, connections, ...) are shown.
        extra_gauges: more figures to show, each read by calling it.
        min_interval: snapshots closer together than this are served from the last one.
        window: seconds of history the percentiles cover.
        slow_p99: a p99 at or above this (seconds) marks an actor type as hot.
        clock: monotonic time; wall: wall-clock time (both replaceable in tests).
    """

    def __init__(
        self,
        system: ActorSystem,
        metrics: MetricsInstrumentation,
        *,
        meters: Meters | None = None,
        extra_gauges: Mapping[str, Callable[[], float]] | None = None,
        min_interval: float = 0.5,
        window: float = 10.0,
        slow_p99: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.system = system
        self.metrics = metrics
        self.meters = meters
        self.extra_gauges = dict(extra_gauges or {})
        self.min_interval = min_interval
        self.window = window
        self.slow_p99 = slow_p99
        self._clock = clock
        self._wall = wall
        keep = max(4, 2 * int(window / max(min_interval, 0.01)))
        self._history: deque[Sample] = deque(maxlen=keep)
        self._last: dict[str, Any] | None = None

    def _gauges(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        if self.meters is not None:
            for g in (
                self.meters.docs_open,
                self.meters.sessions,
                self.meters.gateway_connections,
            ):
                out[g.spec.name.removeprefix("mailslot_")] = _read(g.spec.name, _value_of(g))
        for name, fn in self.extra_gauges.items():
            out[name] = _read(name, fn)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The current JSON document (cached for ``min_interval`` seconds)."""
        now = self._clock()
        history = self._history
        if self._last is not None and history and now - history[-1].time < self.min_interval:
            return self._last
        views = type_views(self.system, self.metrics)
        dispatched = self.system.messages_dispatched
        previous = history[-1] if history else None
        window_start = None
        for s in history:
            if now - s.time <= self.window:
                window_start = s
                break
        if window_start is None:
            window_start = previous  # polled rarely: percentiles since the last poll
        dead: dict[str, int] = {}
        dead_by_type: dict[str, int] = {}
        for (actor_type, reason), n in self.metrics.dead_letters.items():
            dead[reason] = dead.get(reason, 0) + n
            dead_by_type[actor_type] = dead_by_type.get(actor_type, 0) + n
        slow: dict[str, int] = {}
        for (actor_type, signal), n in self.metrics.signals.items():
            if signal == "slow_down":
                slow[actor_type] = slow.get(actor_type, 0) + n
        self._last = build_snapshot(
            now=now,
            wall=self._wall(),
            system_name=self.system.name,
            views=views,
            dispatched=dispatched,
            dead_letters=dead,
            dead_letters_by_type=dead_by_type,
            slow_downs_by_type=slow,
            gauges=self._gauges(),
            previous=previous,
            window_start=window_start,
            buckets=self.metrics.buckets,
            hot_fill=self.system.high_watermark,
            slow_p99=self.slow_p99,
        )
        history.append(take_sample(now, views, dispatched))
        return self._last


def _value_of(gauge: Gauge) -> Callable[[], float]:
    return lambda: gauge.value


def _read(name: str, fn: Callable[[], float]) -> float | None:
    try:
        return float(fn())
    except Exception:
        log.exception("dashboard gauge %s raised; shown as missing", name)
        return None
