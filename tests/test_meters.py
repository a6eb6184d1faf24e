"""The plain-Python instruments, the histogram quantile and the metric catalogue."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.meters import (
    CATALOGUE,
    LATENCY_BUCKETS,
    OTHER,
    Counter,
    Gauge,
    Histogram,
    HistogramData,
    Meters,
    MetricKind,
    exposed_names,
    quantile,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "observability.md"


def test_histogram_puts_values_in_le_buckets() -> None:
    h = HistogramData((1.0, 2.0, 5.0))
    for v in (0.5, 1.0, 1.5, 2.0, 4.0, 7.0):
        h.observe(v)
    h.observe(3.0, n=2)
    assert h.counts == [2, 2, 3, 1]
    assert h.cumulative() == [2, 4, 7, 8]
    assert h.count == 8
    assert h.sum == pytest.approx(0.5 + 1 + 1.5 + 2 + 4 + 7 + 6)


def test_histogram_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="increasing"):
        HistogramData((2.0, 1.0))
    with pytest.raises(ValueError, match="increasing"):
        HistogramData(())


def test_quantile_interpolates_like_histogram_quantile() -> None:
    bounds = (1.0, 2.0, 4.0)
    # 10 observations in (1, 2]: the median is halfway through that bucket
    assert quantile(0.5, bounds, [0, 10, 0, 0]) == pytest.approx(1.5)
    assert quantile(1.0, bounds, [0, 10, 0, 0]) == pytest.approx(2.0)
    # first bucket interpolates from 0
    assert quantile(0.5, bounds, [4, 0, 0, 0]) == pytest.approx(0.5)
    # the +Inf bucket reports the highest finite bound
    assert quantile(0.99, bounds, [1, 0, 0, 99]) == 4.0
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile(1.5, bounds, [1, 0, 0, 0])
    with pytest.raises(ValueError, match="counts"):
        quantile(0.5, bounds, [1, 0])


@given(
    values=st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), min_size=1),
    q1=st.floats(min_value=0, max_value=1),
    q2=st.floats(min_value=0, max_value=1),
)
def test_quantile_is_monotonic_and_within_the_true_values_bucket(
    values: list[float], q1: float, q2: float
) -> None:
    bounds = LATENCY_BUCKETS
    h = HistogramData(bounds)
    for v in values:
        h.observe(v)
    lo, hi = sorted((q1, q2))
    a, b = quantile(lo, bounds, h.counts), quantile(hi, bounds, h.counts)
    assert a is not None
    assert b is not None
    assert a <= b + 1e-12
    # the estimate lies in the bucket that holds the true quantile (or its neighbour at an edge)
    true = sorted(values)[max(0, min(len(values) - 1, math.ceil(hi * len(values)) - 1))]
    upper = next((x for x in bounds if x >= true), bounds[-1])
    assert b <= upper + 1e-12


def test_labelled_instruments_fold_past_max_series() -> None:
    m = Meters(max_series=2)
    m.gateway_closes.labels(1000).inc()
    m.gateway_closes.labels("1001").inc(2)
    m.gateway_closes.labels("4000").inc()
    m.gateway_closes.labels("4001").inc()
    series = dict(m.gateway_closes.series())
    assert set(series) == {("1000",), ("1001",), (OTHER,)}
    assert series[(OTHER,)].value == 2
    assert m.folded == {"mailslot_gateway_closes_total": 2}
    # the folded series itself counts against the limit only once
    assert m.gateway_closes.labels("1000").value == 1


def test_labels_must_match_the_spec() -> None:
    m = Meters()
    with pytest.raises(ValueError, match="labels"):
        m.gateway_frames.labels("in", "extra")
    with pytest.raises(ValueError, match=r"use \.labels"):
        m.gateway_frames.inc()
    with pytest.raises(ValueError, match="only goes up"):
        m.doc_ops_applied.inc(-1)


def test_gauges_set_inc_dec_and_read_functions() -> None:
    m = Meters()
    m.sessions.inc()
    m.sessions.inc(2)
    m.sessions.dec()
    assert m.sessions.value == 2
    m.docs_open.set(7)
    assert m.docs_open.value == 7
    m.cluster_shards_owned.set_function(lambda: 12)
    assert m.cluster_shards_owned.value == 12
    with pytest.raises(ValueError, match="labels"):
        m.cluster_consumer_lag.set_function(lambda: 1)


def test_meters_cover_every_catalogue_metric_of_the_upper_layers() -> None:
    m = Meters()
    names = {i.spec.name for i in m.instruments()}
    upper = {n for n, s in CATALOGUE.items() if s.area not in {"runtime", "metrics"}}
    assert names == upper
    kinds = {Counter: MetricKind.COUNTER, Gauge: MetricKind.GAUGE, Histogram: MetricKind.HISTOGRAM}
    for i in m.instruments():
        assert i.spec.kind is kinds[type(i)]


def test_catalogue_names_follow_the_conventions() -> None:
    for name, spec in CATALOGUE.items():
        assert name.startswith("mailslot_")
        assert re.fullmatch(r"[a-z_]+", name)
        assert name.endswith("_total") == (spec.kind is MetricKind.COUNTER), name
        assert (spec.kind is MetricKind.HISTOGRAM) == bool(spec.buckets), name
        assert not {"actor", "actor_id", "doc_id", "document", "user", "path"} & set(spec.labels)
    spec = CATALOGUE["mailslot_store_commit_seconds"]
    assert exposed_names(spec) == (
        "mailslot_store_commit_seconds_bucket",
        "mailslot_store_commit_seconds_sum",
        "mailslot_store_commit_seconds_count",
    )


def test_no_two_metrics_share_a_family_or_sample_name() -> None:
    families = [n.removesuffix("_total") for n in CATALOGUE]
    assert len(set(families)) == len(families)
    samples = [s for spec in CATALOGUE.values() for s in exposed_names(spec)]
    assert len(set(samples)) == len(samples)
    assert not set(samples) & (set(families) - set(CATALOGUE))


def test_docs_table_lists_exactly_the_catalogue() -> None:
    text = DOCS.read_text()
    rows = set(re.findall(r"^\| `(mailslot_[a-z_]+)`", text, flags=re.M))
    assert rows == set(CATALOGUE)
