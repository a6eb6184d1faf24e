"""Hypothesis strategies for the wire tests.

``st.from_type(Envelope)`` draws envelopes within the field limits (registered here, so every test
module of this folder shares one definition).
"""

from __future__ import annotations

from hypothesis import strategies as st

from mailslot.wire import MAX_ID_BYTES, Envelope


def _optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


_paths = st.text(min_size=1, max_size=40)
_ids = st.binary(min_size=1, max_size=MAX_ID_BYTES)

st.register_type_strategy(
    Envelope,
    st.builds(
        Envelope,
        id=_ids,
        timestamp_ns=st.integers(min_value=0, max_value=2**64 - 1),
        target=_paths,
        tag=st.text(min_size=1, max_size=20),
        schema_version=st.integers(min_value=1, max_value=65535),
        body=st.binary(max_size=200),
        sender=_optional(_paths),
        correlation_id=_optional(_ids),
        reply_to=_optional(_paths),
        traceparent=_optional(st.text(max_size=60)),
        tracestate=_optional(st.text(max_size=60)),
    ),
)
