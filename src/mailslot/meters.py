"""Plain-Python metric instruments, and the catalogue of every metric mailslot exports.

Theory of operation
-------------------
The layers above the runtime (collab, gateway, store, cluster) count things, but must not import
Prometheus (only :mod:`mailslot.observe` does, and nothing below the server imports ``observe``).
So they report to a :class:`Meters` object: a fixed set of named instruments (:class:`Counter`,
:class:`Gauge`, :class:`Histogram`) that hold plain numbers. The server makes one ``Meters`` per
process and hands it down; :mod:`mailslot.observe.metrics` reads the numbers at scrape time and
turns them into Prometheus families. Recording costs an attribute update (and, for a labelled
instrument, a dict lookup), no allocation.

Every metric's name, kind, labels and buckets are declared once, in :data:`CATALOGUE`; the
exporter, the Grafana dashboard test and ``docs/observability.md`` all check against it.

Label cardinality is bounded by construction: labels are things like an actor *type*, a close
code or a direction, never an actor id, a document id or a user. As a second guard, each labelled
instrument holds at most ``max_series`` label sets; further new label sets are folded into one
series whose every label is ``"other"``, and each fold is counted (see :attr:`Instrument.folded`).

Everything here runs on the event loop thread (the same rule as the actors), so no lock is needed.
This module imports only the standard library.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "CATALOGUE",
    "LATENCY_BUCKETS",
    "OTHER",
    "SIZE_BUCKETS",
    "Counter",
    "CounterChild",
    "Gauge",
    "GaugeChild",
    "Histogram",
    "HistogramData",
    "Instrument",
    "Meters",
    "MetricKind",
    "MetricSpec",
    "exposed_names",
    "quantile",
]

#: the label value that absorbs label sets past an instrument's ``max_series``
OTHER = "other"

#: seconds: 10 µs .. 10 s, roughly 1-2.5-5 per decade (handler times, commits, round trips)
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: counts: 1 .. 4096 in powers of two (batch sizes)
SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(13))


class MetricKind(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """The declaration of one metric.

    Attributes:
        name: the exposition name (counters end in ``_total``; a histogram's name is its base,
            exposed as ``_bucket``, ``_sum`` and ``_count``).
        kind: counter, gauge or histogram.
        help: one line for ``# HELP`` and the docs table.
        area: which part of the system reports it (runtime, document, gateway, store, cluster,
            cutover, metrics), for the docs and the dashboard rows.
        labels: label names, all of bounded cardinality.
        buckets: upper bounds of a histogram's buckets (``+Inf`` is implied).
    """

    name: str
    kind: MetricKind
    help: str
    area: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


def _spec(
    name: str,
    kind: MetricKind,
    area: str,
    help: str,
    labels: tuple[str, ...] = (),
    buckets: tuple[float, ...] = (),
) -> MetricSpec:
    return MetricSpec(name, kind, help, area, labels, buckets)


_C, _G, _H = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM
_T = ("actor_type",)

_SPECS: tuple[MetricSpec, ...] = (
    # runtime: read from the system's statistics and the metrics instrumentation
    _spec("mailslot_actors", _G, "runtime", "Live actors.", _T),
    _spec(
        "mailslot_actor_mailbox_depth", _G, "runtime", "Messages waiting, summed over actors.", _T
    ),
    _spec("mailslot_actor_mailbox_depth_max", _G, "runtime", "The deepest single mailbox.", _T),
    _spec(
        "mailslot_actor_mailbox_high_water", _G, "runtime",
        "The highest mailbox depth any live actor has reached.", _T,
    ),
    _spec(
        "mailslot_actor_mailbox_fill_ratio", _G, "runtime",
        "The fullest mailbox's depth over its capacity (0..1).", _T,
    ),
    _spec(
        "mailslot_actor_outbox_depth", _G, "runtime",
        "Messages held in the outboxes of senders slowed down by these actors.", _T,
    ),
    _spec(
        "mailslot_actor_throttled_senders", _G, "runtime",
        "Senders currently slowed down by these actors.", _T,
    ),
    _spec("mailslot_actor_messages_processed_total", _C, "runtime", "Messages handled.", _T),
    _spec(
        "mailslot_actor_busy_seconds_total", _C, "runtime",
        "Dispatcher time spent in handlers (the synchronous part).", _T,
    ),
    _spec(
        "mailslot_actor_processing_seconds", _H, "runtime",
        "Time to handle one message, coroutine handlers to completion (sampled).", _T,
        LATENCY_BUCKETS,
    ),
    _spec("mailslot_actor_failures_total", _C, "runtime", "Handler or hook failures.", _T),
    _spec("mailslot_actor_restarts_total", _C, "runtime", "Restarts by a supervisor.", _T),
    _spec("mailslot_actor_started_total", _C, "runtime", "Actors started.", _T),
    _spec("mailslot_actor_stopped_total", _C, "runtime", "Actors stopped.", _T),
    _spec(
        "mailslot_dead_letters_total", _C, "runtime",
        "Messages not delivered, by the recipient's type and the reason.",
        ("actor_type", "reason"),
    ),
    _spec(
        "mailslot_backpressure_signals_total", _C, "runtime",
        "SlowDown and Resume signals sent by congested actors of this type.",
        ("actor_type", "signal"),
    ),
    _spec("mailslot_messages_dispatched_total", _C, "runtime", "Messages the dispatcher ran."),
    # documents (collab)
    _spec("mailslot_doc_ops_applied_total", _C, "document", "Operations committed to documents."),
    _spec(
        "mailslot_doc_ops_rejected_total", _C, "document",
        "Operations rejected, by ShareDB error code.", ("code",),
    ),
    _spec(
        "mailslot_doc_transforms_total", _C, "document",
        "Operations transformed against concurrent ones.",
    ),
    _spec(
        "mailslot_doc_commit_seconds", _H, "document",
        "From an op's arrival at its document to its commit.", (), LATENCY_BUCKETS,
    ),
    _spec("mailslot_docs_open", _G, "document", "Documents with a live actor."),
    _spec("mailslot_sessions", _G, "document", "Client sessions."),
    # gateway
    _spec("mailslot_gateway_connections", _G, "gateway", "Open WebSocket connections."),
    _spec(
        "mailslot_gateway_connections_accepted_total", _C, "gateway",
        "WebSocket connections accepted.",
    ),
    _spec(
        "mailslot_gateway_frames_total", _C, "gateway",
        "WebSocket frames, by direction (in, out).", ("direction",),
    ),
    _spec(
        "mailslot_gateway_bytes_total", _C, "gateway",
        "WebSocket payload bytes, by direction (in, out).", ("direction",),
    ),
    _spec(
        "mailslot_gateway_closes_total", _C, "gateway", "Connections closed, by close code.",
        ("code",),
    ),
    # presence
    _spec("mailslot_presence_updates_total", _C, "presence", "Presence updates received."),
    _spec(
        "mailslot_presence_frames_total", _C, "presence",
        "Presence frames sent to sessions (updates, leaves, replies, re-send requests).",
    ),
    _spec(
        "mailslot_presence_transformed_total", _C, "presence",
        "Presence updates moved forward past ops committed since their version.",
    ),
    _spec(
        "mailslot_presence_leaves_total", _C, "presence",
        "Presences that left (unsubscribe, closed socket, missed heartbeats).",
    ),
    _spec(
        "mailslot_presence_expired_total", _C, "presence",
        "Sessions whose presences left because their pings stopped.",
    ),
    # notifications
    _spec(
        "mailslot_notify_created_total", _C, "notify",
        "Notifications stored in an inbox, by kind (mention, share).", ("kind",),
    ),
    _spec(
        "mailslot_notify_duplicates_total", _C, "notify",
        "Notifications already in the inbox (a redelivered cause), not delivered again.",
    ),
    _spec(
        "mailslot_notify_live_total", _C, "notify",
        "Notification frames sent to open sessions.",
    ),
    _spec(
        "mailslot_notify_webhook_total", _C, "notify",
        "Webhook deliveries, by outcome (delivered, retried, dead).", ("outcome",),
    ),
    # store
    _spec(
        "mailslot_store_commit_batch_size", _H, "store", "Operations per store commit.", (),
        SIZE_BUCKETS,
    ),
    _spec(
        "mailslot_store_commit_seconds", _H, "store", "Store commit latency.", (),
        LATENCY_BUCKETS,
    ),
    _spec("mailslot_store_errors_total", _C, "store", "Failed store commits."),
    # cluster
    _spec("mailslot_cluster_published_total", _C, "cluster", "Logical messages published."),
    _spec(
        "mailslot_cluster_confirms_total", _C, "cluster",
        "Publisher confirms, by outcome (ack, nack).", ("outcome",),
    ),
    _spec("mailslot_cluster_consumed_total", _C, "cluster", "Logical messages consumed."),
    _spec(
        "mailslot_cluster_redeliveries_total", _C, "cluster",
        "Messages the broker redelivered.",
    ),
    _spec(
        "mailslot_cluster_batch_size", _H, "cluster",
        "Logical messages per broker message, by direction (publish, consume).",
        ("direction",), SIZE_BUCKETS,
    ),
    _spec("mailslot_cluster_shards_owned", _G, "cluster", "Shards this node owns."),
    _spec(
        "mailslot_cluster_consumer_lag_messages", _G, "cluster",
        "Messages ready in a queue this node consumes.", ("queue",),
    ),
    # the cutover between the old engine and the actor engine (mailslot.migrate.cutover)
    _spec(
        "mailslot_cutover_requests_total", _C, "cutover",
        "Document requests routed, by serving engine (actor, legacy).", ("engine",),
    ),
    _spec(
        "mailslot_cutover_errors_total", _C, "cutover", "Error replies, by serving engine.",
        ("engine",),
    ),
    _spec(
        "mailslot_cutover_request_seconds", _H, "cutover",
        "From routing a request to its reply, by serving engine.", ("engine",), LATENCY_BUCKETS,
    ),
    _spec(
        "mailslot_cutover_stalls_total", _C, "cutover",
        "Times an engine answered nothing for the stall timeout while requests waited.",
        ("engine",),
    ),
    _spec("mailslot_cutover_moves_total", _C, "cutover", "Documents moved between engines."),
    _spec(
        "mailslot_cutover_shadow_total", _C, "cutover",
        "Shadow comparisons, by outcome (matched, mismatched, text_matched, text_mismatched, "
        "reseeded, dropped).", ("outcome",),
    ),
    _spec(
        "mailslot_cutover_shadow_seconds", _H, "cutover",
        "Latency of the shadow engine per op copy.", (), LATENCY_BUCKETS,
    ),
    # the metrics themselves
    _spec(
        "mailslot_metrics_label_overflow_total", _C, "metrics",
        "Label sets folded into 'other' because an instrument reached its series limit.",
        ("metric",),
    ),
)  # fmt: skip

#: every metric mailslot exports, by name
CATALOGUE: Mapping[str, MetricSpec] = {s.name: s for s in _SPECS}


def exposed_names(spec: MetricSpec) -> tuple[str, ...]:
    """The sample names a metric appears under in the text exposition."""
    if spec.kind is MetricKind.HISTOGRAM:
        return (f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count")
    return (spec.name,)


# ------------------------------------------------------------------------------------ histograms


class HistogramData:
    """Fixed buckets, a sum and a count; ``observe`` is a bisect and three additions.

    ``counts[i]`` counts observations ``<= bounds[i]`` and ``> bounds[i-1]``; the last slot
    (index ``len(bounds)``) is the ``+Inf`` bucket. Counts are not cumulative here.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"histogram bounds must be increasing and non-empty, got {bounds}")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        """Record ``value`` (``n`` times)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def cumulative(self) -> list[int]:
        """Counts per bucket, cumulative, ``+Inf`` last (as Prometheus exposes them)."""
        out: list[int] = []
        total = 0
        for c in self.counts:
            total += c
            out.append(total)
        return out


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q``-quantile of bucketed observations, interpolated as ``histogram_quantile`` does.

    Args:
        q: between 0 and 1.
        bounds: bucket upper bounds (``+Inf`` implied after the last).
        counts: per-bucket counts, *not* cumulative, ``len(bounds) + 1`` of them.

    Returns:
        ``None`` when there are no observations. A quantile falling in the ``+Inf`` bucket is
        reported as the highest finite bound (Prometheus does the same).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be between 0 and 1, got {q}")
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"need {len(bounds) + 1} counts for {len(bounds)} bounds")
    total = float(sum(counts))
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, c in enumerate(counts):
        if c <= 0:
            continue
        if seen + c >= rank:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            upper = bounds[i]
            return lower + (upper - lower) * max(0.0, rank - seen) / c
        seen += c
    return bounds[-1]  # pragma: no cover - rank <= total always lands in a bucket


# ---------------------------------------------------------------------------------- instruments


class CounterChild:
    """One series of a counter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (must not be negative)."""
        if amount < 0:
            raise ValueError(f"a counter only goes up; got inc({amount})")
        self.value += amount


class GaugeChild:
    """One series of a gauge."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


C = TypeVar("C", CounterChild, GaugeChild, HistogramData)


class Instrument(Generic[C]):
    """A named metric and its series (one per label set, at most ``max_series``).

    An unlabelled instrument is used directly (``meters.doc_ops_applied.inc()``); a labelled
    one through :meth:`labels` (``meters.gateway_closes.labels("1000").inc()``). Callers on a
    hot path may keep the child that ``labels`` returns.
    """

    __slots__ = ("_children", "_default", "folded", "max_series", "spec")

    def __init__(self, spec: MetricSpec, max_series: int) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series}")
        self.spec = spec
        self.max_series = max_series
        self.folded = 0
        self._children: dict[tuple[str, ...], C] = {}
        self._default: C | None = None if spec.labels else self._new()
        if self._default is not None:
            self._children[()] = self._default

    def _new(self) -> C:
        raise NotImplementedError

    def labels(self, *values: object) -> C:
        """The series for these label values (in the order of ``spec.labels``)."""
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is not None:
            return child
        if len(key) != len(self.spec.labels):
            raise ValueError(
                f"{self.spec.name} has labels {self.spec.labels}, got {len(key)} values {key}"
            )
        if len(self._children) >= self.max_series:
            self.folded += 1
            key = (OTHER,) * len(key)
            child = self._children.get(key)
            if child is not None:
                return child
        child = self._children[key] = self._new()
        return child

    def series(self) -> Iterator[tuple[tuple[str, ...], C]]:
        """Every (label values, series) pair, in creation order."""
        return iter(list(self._children.items()))

    def _only(self) -> C:
        if self._default is None:
            raise ValueError(f"{self.spec.name} has labels {self.spec.labels}: use .labels(...)")
        return self._default


class Counter(Instrument[CounterChild]):
    """A value that only goes up."""

    __slots__ = ()

    def _new(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    @property
    def value(self) -> float:
        return self._only().value


class Gauge(Instrument[GaugeChild]):
    """A value that goes up and down; or, with :meth:`set_function`, read at scrape time."""

    __slots__ = ("function",)

    def __init__(self, spec: MetricSpec, max_series: int) -> None:
        super().__init__(spec, max_series)
        self.function: Callable[[], float] | None = None

    def _new(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        self._only().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)

    def set_function(self, fn: Callable[[], float] | None) -> None:
        """Read the (unlabelled) value from ``fn()`` whenever it is collected."""
        self._only()
        self.function = fn

    @property
    def value(self) -> float:
        if self.function is not None:
            return float(self.function())
        return self._only().value


class Histogram(Instrument[HistogramData]):
    """Observations in the fixed buckets of its spec."""

    __slots__ = ()

    def _new(self) -> HistogramData:
        return HistogramData(self.spec.buckets)

    def observe(self, value: float) -> None:
        self._only().observe(value)


# ------------------------------------------------------------------------------------- facade


class Meters:
    """The instruments the layers above the runtime report to, one set per server process.

    Attributes are named after the catalogue entries without the ``mailslot_`` prefix and the
    ``_total`` suffix. Runtime metrics are not here: the observe layer reads those from the actor
    system itself.

    Args:
        max_series: the most label sets any one labelled instrument keeps.
    """

    def __init__(self, *, max_series: int = 64) -> None:
        self.max_series = max_series
        # documents
        self.doc_ops_applied = self._counter("mailslot_doc_ops_applied_total")
        self.doc_ops_rejected = self._counter("mailslot_doc_ops_rejected_total")
        self.doc_transforms = self._counter("mailslot_doc_transforms_total")
        self.doc_commit_seconds = self._histogram("mailslot_doc_commit_seconds")
        self.docs_open = self._gauge("mailslot_docs_open")
        self.sessions = self._gauge("mailslot_sessions")
        # gateway
        self.gateway_connections = self._gauge("mailslot_gateway_connections")
        self.gateway_connections_accepted = self._counter(
            "mailslot_gateway_connections_accepted_total"
        )
        self.gateway_frames = self._counter("mailslot_gateway_frames_total")
        self.gateway_bytes = self._counter("mailslot_gateway_bytes_total")
        self.gateway_closes = self._counter("mailslot_gateway_closes_total")
        # presence
        self.presence_updates = self._counter("mailslot_presence_updates_total")
        self.presence_frames = self._counter("mailslot_presence_frames_total")
        self.presence_transformed = self._counter("mailslot_presence_transformed_total")
        self.presence_leaves = self._counter("mailslot_presence_leaves_total")
        self.presence_expired = self._counter("mailslot_presence_expired_total")
        # notifications
        self.notify_created = self._counter("mailslot_notify_created_total")
        self.notify_duplicates = self._counter("mailslot_notify_duplicates_total")
        self.notify_live = self._counter("mailslot_notify_live_total")
        self.notify_webhook = self._counter("mailslot_notify_webhook_total")
        # store
        self.store_commit_batch_size = self._histogram("mailslot_store_commit_batch_size")
        self.store_commit_seconds = self._histogram("mailslot_store_commit_seconds")
        self.store_errors = self._counter("mailslot_store_errors_total")
        # cluster
        self.cluster_published = self._counter("mailslot_cluster_published_total")
        self.cluster_confirms = self._counter("mailslot_cluster_confirms_total")
        self.cluster_consumed = self._counter("mailslot_cluster_consumed_total")
        self.cluster_redeliveries = self._counter("mailslot_cluster_redeliveries_total")
        self.cluster_batch_size = self._histogram("mailslot_cluster_batch_size")
        self.cluster_shards_owned = self._gauge("mailslot_cluster_shards_owned")
        self.cluster_consumer_lag = self._gauge("mailslot_cluster_consumer_lag_messages")
        # cutover
        self.cutover_requests = self._counter("mailslot_cutover_requests_total")
        self.cutover_errors = self._counter("mailslot_cutover_errors_total")
        self.cutover_request_seconds = self._histogram("mailslot_cutover_request_seconds")
        self.cutover_stalls = self._counter("mailslot_cutover_stalls_total")
        self.cutover_moves = self._counter("mailslot_cutover_moves_total")
        self.cutover_shadow = self._counter("mailslot_cutover_shadow_total")
        self.cutover_shadow_seconds = self._histogram("mailslot_cutover_shadow_seconds")

    def _counter(self, name: str) -> Counter:
        return Counter(_checked(name, MetricKind.COUNTER), self.max_series)

    def _gauge(self, name: str) -> Gauge:
        return Gauge(_checked(name, MetricKind.GAUGE), self.max_series)

    def _histogram(self, name: str) -> Histogram:
        return Histogram(_checked(name, MetricKind.HISTOGRAM), self.max_series)

    def instruments(self) -> list[Counter | Gauge | Histogram]:
        """Every instrument, in declaration order."""
        return [v for v in vars(self).values() if isinstance(v, Counter | Gauge | Histogram)]

    @property
    def folded(self) -> dict[str, int]:
        """Label sets folded into ``other``, by metric name (only metrics that folded any)."""
        return {i.spec.name: i.folded for i in self.instruments() if i.folded}


def _checked(name: str, kind: MetricKind) -> MetricSpec:
    spec = CATALOGUE[name]
    assert spec.kind is kind, f"{name} is a {spec.kind}, not a {kind}"
    return spec
