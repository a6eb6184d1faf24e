"""Prometheus metrics for an actor system: cheap aggregation in hooks, families at scrape time.

Theory of operation
-------------------
:class:`MetricsInstrumentation` is installed on an :class:`~mailslot.runtime.ActorSystem`. Its
hooks only add to plain Python numbers kept per actor *type* (never per actor: label cardinality
stays bounded by the code, not by the load). It never touches ``prometheus_client`` on the hot
path. :class:`MetricsCollector` is a ``prometheus_client`` collector that, at scrape time, reads
those numbers, the system's live statistics (mailbox depths, high water, throttled senders) and a
:class:`~mailslot.meters.Meters` object (the layers above the runtime), and builds the metric
families. :func:`make_registry` puts one collector in a fresh ``CollectorRegistry`` per system:
there is no global state.

Processing time, and what it costs
----------------------------------
The runtime reports whole turns through ``batch`` (``count`` messages in ``seconds``); calling a
hook per message costs about as much as handling a trivial message. So:

- ``mailslot_actor_messages_processed_total`` and ``mailslot_actor_busy_seconds_total`` are exact,
  from ``batch``. Busy time covers the synchronous part of handlers (what holds the dispatcher up);
  a coroutine handler's awaits are not in it.
- ``mailslot_actor_processing_seconds`` (the histogram) is *sampled*: about one turn in
  ``sample_every`` (64), and at least one every ``sample_interval`` (20 ms) while there is
  traffic, runs with per-message timing; every message of a sampled turn is observed exactly,
  coroutine handlers to completion. The gaps between sampled turns are random, so that a
  periodic schedule (two actors taking turns) cannot alias the sample onto one type. Its
  ``_count`` is therefore the number of *sampled* messages; use the processed counter for rates.
  The quantiles are those of a random sample of turns: unbiased, with a sampling error that
  shrinks with traffic (the time floor gives even a quiet system ~50 sampled turns a second, a
  busy one one turn in 64). ``sample_every=1`` times every message. A timed turn costs about
  2 µs more per message (the runtime's per-message path), so the sampling costs about
  2 µs / 64 ≈ 30 ns per message under load.
- The dispatcher reads ``per_message`` once per turn; this class flips it between turns, from
  ``batch``. When it is part of a :class:`~mailslot.observe.compose.CompositeInstrumentation`
  whose other parts want every message (tracing), it sees, and records, every message.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from mailslot.meters import (
    CATALOGUE,
    LATENCY_BUCKETS,
    OTHER,
    Gauge,
    Histogram,
    HistogramData,
    Meters,
    MetricKind,
    MetricSpec,
)
from mailslot.runtime import ActorRef, ActorSystem, DeadLetter, Instrumentation

__all__ = [
    "UNKNOWN_TYPE",
    "MetricsCollector",
    "MetricsInstrumentation",
    "TypeTotals",
    "TypeView",
    "exposition",
    "make_registry",
    "metrics_instrumentation",
    "type_views",
]

#: the actor type of a dead letter's recipient that is not (or no longer) a live local actor
UNKNOWN_TYPE = "unknown"


class TypeTotals:
    """Counters for one actor type, updated by the hooks."""

    __slots__ = (
        "busy_seconds",
        "failures",
        "histogram",
        "processed",
        "restarts",
        "started",
        "stopped",
    )

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.processed = 0
        self.busy_seconds = 0.0
        self.failures = 0
        self.restarts = 0
        self.started = 0
        self.stopped = 0
        self.histogram = HistogramData(buckets)


class MetricsInstrumentation(Instrumentation):
    """Counts per actor type; cheap enough to leave on (see the module docs for the figures).

    Args:
        sample_every: time every message of about one turn in this many (1: every message).
        sample_interval: but time a turn at least this often (seconds) while there is traffic,
            so that quiet actor types get samples too.
        max_types: actor types tracked separately; more are folded into ``other``.
        buckets: bucket bounds of the processing-time histogram, in seconds.
        seed: seeds the sampling gaps (for reproducible tests).
        clock: the time source of ``sample_interval`` (replaceable in tests).
    """

    per_message = False
    stamps_envelopes = False

    def __init__(
        self,
        *,
        sample_every: int = 64,
        sample_interval: float = 0.02,
        max_types: int = 256,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
        seed: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if sample_every < 1:
            raise ValueError(f"sample_every must be >= 1, got {sample_every}")
        if sample_interval < 0:
            raise ValueError(f"sample_interval must be >= 0, got {sample_interval}")
        if max_types < 1:
            raise ValueError(f"max_types must be >= 1, got {max_types}")
        self.sample_every = sample_every
        self.sample_interval = sample_interval
        self.max_types = max_types
        self.buckets = buckets
        sampling = sample_every > 1
        self.per_message = not sampling
        # Every few turns (a random gap, mean `check`) `_tick` checks whether to time the next
        # turn: after `checks_per_sample` checks, or once `sample_interval` has passed. The gaps
        # are drawn once: drawing one per check would cost more than the check.
        check = min(8, sample_every)
        self._checks_per_sample = max(1, round(sample_every / check))
        rng = random.Random(seed)
        self._gaps = [rng.randint(1, 2 * check - 1) for _ in range(251)]
        self._next_gap = 0
        self._checks = 0
        self._clock = clock
        self._due = 0.0
        # turns until the next `_tick` (never, when every message is timed)
        self._countdown = self._gap() if sampling else 2**62
        self.types: dict[str, TypeTotals] = {}
        self._get = self.types.get
        #: dead letters by (recipient type, reason)
        self.dead_letters: collections.Counter[tuple[str, str]] = collections.Counter()
        #: SlowDown/Resume signals by (congested actor's type, "slow_down" | "resume")
        self.signals: collections.Counter[tuple[str, str]] = collections.Counter()
        #: actor types folded into ``other`` because ``max_types`` was reached
        self.folded = 0
        # the type of every live actor, for hooks that only get a ref (dead letters, signals)
        self._live: dict[ActorRef, str] = {}

    def _gap(self) -> int:
        i = self._next_gap
        self._next_gap = (i + 1) % len(self._gaps)
        return self._gaps[i]

    def _tick(self) -> None:
        if self.per_message:  # the turn that just ended was timed: back to batches for a while
            self.per_message = False
            self._countdown = self._gap()
            return
        self._checks += 1
        now = self._clock()
        if self._checks >= self._checks_per_sample or now >= self._due:
            self._checks = 0
            self._due = now + self.sample_interval
            self.per_message = True  # time the next turn
            self._countdown = 1
        else:
            self._countdown = self._gap()

    def totals(self, actor_type: str) -> TypeTotals:
        """The counters of ``actor_type`` (made on first use; ``other`` past ``max_types``)."""
        t = self.types.get(actor_type)
        if t is not None:
            return t
        if len(self.types) >= self.max_types:
            self.folded += 1
            actor_type = OTHER
            t = self.types.get(OTHER)
            if t is not None:
                return t
        t = self.types[actor_type] = TypeTotals(self.buckets)
        return t

    # ---- hooks (event loop thread; cheap; must not raise) --------------------------------------

    def batch(self, ref: ActorRef, actor_type: str, count: int, seconds: float, depth: int) -> None:
        # called once per turn: kept to a dict lookup, two additions and a countdown
        t = self._get(actor_type)
        if t is None:
            t = self.totals(actor_type)
        t.processed += count
        t.busy_seconds += seconds
        c = self._countdown - 1
        self._countdown = c
        if c <= 0:
            self._tick()

    def message_end(
        self,
        ref: ActorRef,
        actor_type: str,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        t = self._get(actor_type)
        if t is None:
            t = self.totals(actor_type)
        t.histogram.observe(seconds)

    def spawned(self, ref: ActorRef, actor_type: str) -> None:
        self._live[ref] = actor_type
        self.totals(actor_type).started += 1

    def stopped(self, ref: ActorRef, actor_type: str) -> None:
        self._live.pop(ref, None)
        self.totals(actor_type).stopped += 1

    def restarted(self, ref: ActorRef, actor_type: str, error: BaseException) -> None:
        self._live[ref] = actor_type
        self.totals(actor_type).restarts += 1

    def failed(self, ref: ActorRef, actor_type: str, error: BaseException) -> None:
        self.totals(actor_type).failures += 1

    def dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters[self._type_of(letter.recipient), letter.reason.value] += 1

    def backpressure(self, target: ActorRef, sender: ActorRef, slow: bool) -> None:
        self.signals[self._type_of(target), "slow_down" if slow else "resume"] += 1

    def _type_of(self, ref: ActorRef) -> str:
        name = self._live.get(ref)
        if name is None:
            return UNKNOWN_TYPE
        return name if name in self.types else OTHER


def metrics_instrumentation() -> MetricsInstrumentation:
    """The default metrics instrumentation (``--instrumentation mailslot.observe:...``)."""
    return MetricsInstrumentation()


# ------------------------------------------------------------------------------ per-type views


@dataclass(frozen=True, slots=True)
class TypeView:
    """Everything known about one actor type at one moment (for the collector and dashboard)."""

    actor_type: str
    actors: int
    mailbox_depth: int
    mailbox_depth_max: int
    mailbox_capacity: int
    mailbox_high_water: int
    fill_ratio: float
    outbox_depth: int
    throttled_senders: int
    processed: int
    busy_seconds: float
    failures: int
    restarts: int
    started: int
    stopped: int
    histogram_counts: tuple[int, ...]
    histogram_sum: float
    histogram_count: int


def type_views(system: ActorSystem, metrics: MetricsInstrumentation) -> list[TypeView]:
    """One view per actor type: live statistics of the system joined with the hook counters.

    Cost: one pass over the live actors (``system.actor_statistics()``).
    """
    live: dict[str, list[int | float]] = {}
    for a in system.actor_statistics():
        name = a.actor_type
        if name not in metrics.types and name not in live and len(live) >= metrics.max_types:
            name = OTHER
        v = live.get(name)
        if v is None:
            v = live[name] = [0, 0, 0, 0, 0, 0.0, 0, 0]
        depth = a.mailbox_depth
        v[0] += 1
        v[1] += depth
        v[2] = max(v[2], depth)
        v[3] = max(v[3], a.mailbox_capacity)
        v[4] = max(v[4], a.mailbox_high_water)
        v[5] = max(v[5], depth / a.mailbox_capacity if a.mailbox_capacity else 0.0)
        v[6] += a.outbox_depth
        v[7] += a.throttled_senders
    names = list(metrics.types) + [n for n in live if n not in metrics.types]
    empty = TypeTotals(metrics.buckets)
    views = []
    for name in names:
        t = metrics.types.get(name, empty)
        v = live.get(name, [0, 0, 0, 0, 0, 0.0, 0, 0])
        h = t.histogram
        views.append(
            TypeView(
                actor_type=name,
                actors=int(v[0]),
                mailbox_depth=int(v[1]),
                mailbox_depth_max=int(v[2]),
                mailbox_capacity=int(v[3]),
                mailbox_high_water=int(v[4]),
                fill_ratio=float(v[5]),
                outbox_depth=int(v[6]),
                throttled_senders=int(v[7]),
                processed=t.processed,
                busy_seconds=t.busy_seconds,
                failures=t.failures,
                restarts=t.restarts,
                started=t.started,
                stopped=t.stopped,
                histogram_counts=tuple(h.counts),
                histogram_sum=h.sum,
                histogram_count=h.count,
            )
        )
    return views


# ----------------------------------------------------------------------------------- collector


_Scalar = CounterMetricFamily | GaugeMetricFamily


def _scalar(spec: MetricSpec) -> _Scalar:
    if spec.kind is MetricKind.COUNTER:
        return CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    assert spec.kind is MetricKind.GAUGE, spec
    return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))


def _histogram(spec: MetricSpec) -> HistogramMetricFamily:
    assert spec.kind is MetricKind.HISTOGRAM, spec
    return HistogramMetricFamily(spec.name, spec.help, labels=list(spec.labels))


def _le(bound: float) -> str:
    """A bucket bound as Prometheus clients write it (``+Inf``, ``0.005``, ``1.0``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _add_histogram(
    family: HistogramMetricFamily,
    labels: list[str],
    bounds: tuple[float, ...],
    counts: Sequence[int],
    total: float,
) -> None:
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, c in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += c
        buckets.append((_le(bound), cumulative))
    family.add_metric(labels, buckets, total)


class MetricsCollector:
    """A ``prometheus_client`` collector over a system, its metrics hooks and a :class:`Meters`.

    Args:
        system: the actor system (read through ``actor_statistics()`` at scrape time).
        metrics: the :class:`MetricsInstrumentation` installed on ``system``.
        meters: the instruments of the layers above the runtime, if any.
    """

    def __init__(
        self,
        system: ActorSystem,
        metrics: MetricsInstrumentation,
        meters: Meters | None = None,
    ) -> None:
        self.system = system
        self.metrics = metrics
        self.meters = meters

    def collect(self) -> Iterator[Metric]:
        yield from self._runtime()
        if self.meters is not None:
            yield from self._layers(self.meters)
        overflow = _scalar(CATALOGUE["mailslot_metrics_label_overflow_total"])
        folded = dict(self.meters.folded) if self.meters is not None else {}
        if self.metrics.folded:
            folded["actor_type"] = self.metrics.folded
        for name, n in folded.items():
            overflow.add_metric([name], n)
        yield overflow

    def _runtime(self) -> Iterator[Metric]:
        runtime = [spec for spec in CATALOGUE.values() if spec.area == "runtime"]
        fam = {s.name: _scalar(s) for s in runtime if s.kind is not MetricKind.HISTOGRAM}
        processing = _histogram(CATALOGUE["mailslot_actor_processing_seconds"])
        bounds = self.metrics.buckets
        for v in type_views(self.system, self.metrics):
            lv = [v.actor_type]
            for name, value in (
                ("mailslot_actors", v.actors),
                ("mailslot_actor_mailbox_depth", v.mailbox_depth),
                ("mailslot_actor_mailbox_depth_max", v.mailbox_depth_max),
                ("mailslot_actor_mailbox_high_water", v.mailbox_high_water),
                ("mailslot_actor_mailbox_fill_ratio", v.fill_ratio),
                ("mailslot_actor_outbox_depth", v.outbox_depth),
                ("mailslot_actor_throttled_senders", v.throttled_senders),
                ("mailslot_actor_messages_processed_total", v.processed),
                ("mailslot_actor_busy_seconds_total", v.busy_seconds),
                ("mailslot_actor_failures_total", v.failures),
                ("mailslot_actor_restarts_total", v.restarts),
                ("mailslot_actor_started_total", v.started),
                ("mailslot_actor_stopped_total", v.stopped),
            ):
                fam[name].add_metric(lv, value)
            _add_histogram(processing, lv, bounds, v.histogram_counts, v.histogram_sum)
        dead = fam["mailslot_dead_letters_total"]
        for (actor_type, reason), n in sorted(self.metrics.dead_letters.items()):
            dead.add_metric([actor_type, reason], n)
        signals = fam["mailslot_backpressure_signals_total"]
        for (actor_type, signal), n in sorted(self.metrics.signals.items()):
            signals.add_metric([actor_type, signal], n)
        fam["mailslot_messages_dispatched_total"].add_metric([], self.system.messages_dispatched)
        yield from fam.values()
        yield processing

    def _layers(self, meters: Meters) -> Iterator[Metric]:
        for instrument in meters.instruments():
            spec = instrument.spec
            if isinstance(instrument, Histogram):
                hist = _histogram(spec)
                for labels, h in instrument.series():
                    _add_histogram(hist, list(labels), h.bounds, h.counts, h.sum)
                yield hist
                continue
            family = _scalar(spec)
            if isinstance(instrument, Gauge) and instrument.function is not None:
                family.add_metric([], instrument.value)
            else:
                for labels, child in instrument.series():
                    family.add_metric(list(labels), child.value)
            yield family


def make_registry(
    system: ActorSystem, metrics: MetricsInstrumentation, meters: Meters | None = None
) -> CollectorRegistry:
    """A fresh registry holding one :class:`MetricsCollector` (nothing global is touched)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(system, metrics, meters))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (what ``/metrics`` serves)."""
    return generate_latest(registry)
