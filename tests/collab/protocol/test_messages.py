"""Decoding client frames: every malformed frame is a ProtocolError naming the fault."""

from __future__ import annotations

import contextlib
import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.collab.protocol.messages import (
    BulkSubscribe,
    Handshake,
    PresenceUpdate,
    Submit,
    Subscribe,
    decode_request,
    echo_for_error,
    error_reply,
)
from mailslot.errors import ProtocolError


def test_decodes_the_frames_the_sharedb_client_sends() -> None:
    assert decode_request('{"a":"hs","id":null,"protocol":1,"protocolMinor":2}') == Handshake(
        None, 1, 2
    )
    assert decode_request('{"a":"s","c":"docs","d":"d1"}') == Subscribe("docs", "d1")
    op = decode_request(
        '{"a":"op","c":"docs","d":"d1","v":1,"seq":2,"x":{},"op":[5," from A",{"d":2}]}'
    )
    assert isinstance(op, Submit)
    assert (op.kind, op.op, op.v, op.seq, op.src) == ("op", [5, " from A", {"d": 2}], 1, 2, None)
    create = decode_request(
        '{"a":"op","c":"docs","d":"d1","v":null,"seq":1,"create":{"type":"text-unicode","data":"hi"}}'
    )
    assert isinstance(create, Submit)
    assert create.kind == "create"
    delete = decode_request('{"a":"op","c":"docs","d":"d1","v":3,"seq":4,"del":true}')
    assert isinstance(delete, Submit)
    assert (delete.kind, delete.delete) == ("del", True)
    noop = decode_request('{"a":"op","c":"docs","d":"d1","v":3,"seq":4,"op":[]}')
    assert isinstance(noop, Submit)
    assert noop.kind == "op"
    bulk = decode_request('{"a":"bs","c":"docs","b":{"d1":5,"d2":null}}')
    assert bulk == BulkSubscribe("docs", {"d1": 5, "d2": None})
    presence = decode_request(
        '{"a":"p","ch":"docs.d1","id":"p1","p":{"index":3,"length":0},"pv":0,"c":"docs","d":"d1","v":1}'
    )
    assert isinstance(presence, PresenceUpdate)
    assert presence.p == {"index": 3, "length": 0}


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        ("{nope", "ERR_MESSAGE_BADLY_FORMED", "not a JSON message"),
        ("[1,2]", "ERR_MESSAGE_BADLY_FORMED", "invalid"),
        ('{"a":"zz"}', "ERR_MESSAGE_BADLY_FORMED", "unknown action"),
        ('{"c":"docs"}', "ERR_MESSAGE_BADLY_FORMED", "`a`"),
        ('{"a":"s","c":"docs"}', "ERR_MESSAGE_BADLY_FORMED", "`d`"),
        ('{"a":"s","c":"docs","d":7}', "ERR_MESSAGE_BADLY_FORMED", "$.d"),
        ('{"a":"s","c":"docs","d":"__proto__"}', "ERR_MESSAGE_BADLY_FORMED", "invalid 'd'"),
        ('{"a":"s","c":"docs","d":"x","v":-1}', "ERR_MESSAGE_BADLY_FORMED", "invalid 'v'"),
        ('{"a":"op","c":"docs","d":"x","v":1,"seq":1,"op":[1.5]}', "ERR_OT_OP_BADLY_FORMED", "op"),
        ('{"a":"op","c":"docs","d":"x","v":1,"seq":1,"op":"abc"}', "ERR_OT_OP_BADLY_FORMED", "op"),
        ('{"a":"bs","c":"docs","b":[]}', "ERR_MESSAGE_BADLY_FORMED", "1 to 10,000 ids"),
        ('{"a":"bs","c":"docs","b":{"x":-2}}', "ERR_MESSAGE_BADLY_FORMED", "version for 'x'"),
    ],
)
def test_malformed_frames_name_the_fault(frame: str, code: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(frame)
    assert info.value.code == code
    assert fragment in str(info.value)


def test_error_reply_echoes_the_request() -> None:
    echo = echo_for_error('{"a":"op","c":"docs","d":"x","seq":3}')
    reply = json.loads(error_reply(echo, "ERR_X", "because"))
    assert reply == {
        "a": "op",
        "c": "docs",
        "d": "x",
        "seq": 3,
        "error": {"code": "ERR_X", "message": "because"},
    }
    assert echo_for_error("not json") == {}
    assert echo_for_error("[1]") == {}


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_no_input_escapes_as_anything_but_protocol_error(frame: bytes | str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_request(frame)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=10,
    ),
    st.sampled_from(["hs", "s", "f", "u", "bs", "op", "nf", "nt", "pp", "p", "ps", "pr", "x"]),
)
def test_structured_garbage_is_protocol_error_or_a_request(body: object, action: str) -> None:
    frame = {"a": action, "c": "docs", "d": "d", "payload": body}
    if isinstance(body, dict):
        frame.update({k: v for k, v in body.items() if k != "a"})
    with contextlib.suppress(ProtocolError):
        decode_request(msgspec.json.encode(frame))
