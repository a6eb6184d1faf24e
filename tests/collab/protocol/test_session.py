"""The client session state machine: frames in, effects out, no I/O."""

from __future__ import annotations

import json
from typing import Any

from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
    DocSnapshot,
    OpAcked,
    SnapshotAt,
    SubmitOp,
    SubscribeDoc,
    UnsubscribeDoc,
)
from mailslot.collab.protocol.session import (
    CLOSE_POLICY,
    Close,
    PresenceCommand,
    Send,
    SendAll,
    Session,
    ToDocument,
)

TEXT = "http://sharejs.org/types/text-unicode"


def frames(effects: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in effects:
        if isinstance(e, Send):
            out.append(json.loads(e.frame))
        elif isinstance(e, SendAll):
            out.extend(json.loads(f) for f in e.frames)
    return out


def doc_requests(effects: list[Any]) -> list[Any]:
    return [e.request for e in effects if isinstance(e, ToDocument)]


def test_handshake_answers_with_json0_and_keeps_a_presented_src() -> None:
    s = Session(src="server-1")
    (reply,) = frames(s.receive('{"a":"hs","id":null,"protocol":1,"protocolMinor":2}'))
    assert reply == {
        "a": "hs",
        "protocol": 1,
        "protocolMinor": 2,
        "id": "server-1",
        "type": "http://sharejs.org/types/JSONv0",
    }
    again = Session(src="server-2")
    (reply,) = frames(again.receive('{"a":"hs","id":"server-1","protocol":1,"protocolMinor":2}'))
    assert reply["id"] == "server-1"
    assert again.src == "server-1"


def test_subscribe_then_snapshot_reply() -> None:
    s = Session(src="a")
    (req,) = doc_requests(s.receive('{"a":"s","c":"docs","d":"d1"}'))
    assert isinstance(req, SubscribeDoc)
    assert (req.c, req.d, req.v, req.subscribe) == ("docs", "d1", None, True)
    assert s.subscriptions == {("docs", "d1")}
    (reply,) = frames(s.doc_reply(DocSnapshot(tag=req.tag, v=1, type=TEXT, data="hello")))
    assert reply == {
        "a": "s",
        "c": "docs",
        "d": "d1",
        "data": {"v": 1, "type": TEXT, "data": "hello"},
    }


def test_missing_document_snapshot_has_type_null_and_no_data() -> None:
    s = Session(src="a")
    (req,) = doc_requests(s.receive('{"a":"f","c":"docs","d":"nope"}'))
    (reply,) = frames(s.doc_reply(DocSnapshot(tag=req.tag, v=0, type=None)))
    assert reply == {"a": "f", "c": "docs", "d": "nope", "data": {"v": 0, "type": None}}
    assert s.subscriptions == set()


def test_subscribe_from_a_version_sends_ops_then_a_bare_reply() -> None:
    s = Session(src="a")
    (req,) = doc_requests(s.receive('{"a":"s","c":"docs","d":"d1","v":3}'))
    assert req.v == 3
    out = frames(s.doc_reply(DocOps(tag=req.tag, frames=('{"a":"op","v":3}', '{"a":"op","v":4}'))))
    assert out == [{"a": "op", "v": 3}, {"a": "op", "v": 4}, {"a": "s", "c": "docs", "d": "d1"}]


def test_submit_uses_the_session_src_and_acks_after_missed_ops() -> None:
    s = Session(src="me")
    (req,) = doc_requests(
        s.receive('{"a":"op","c":"docs","d":"d1","v":1,"seq":2,"x":{},"op":[5," from A"]}')
    )
    assert isinstance(req, SubmitOp)
    assert (req.src, req.seq, req.v, req.kind, req.op) == ("me", 2, 1, "op", [5, " from A"])
    missed = '{"a":"op","c":"docs","d":"d1","v":1,"src":"other","seq":9,"op":["x"]}'
    out = frames(s.doc_reply(OpAcked(tag=req.tag, v=2, src="me", seq=2, frames=(missed,))))
    assert out == [
        json.loads(missed),
        {"a": "op", "c": "docs", "d": "d1", "v": 2, "src": "me", "seq": 2},
    ]


def test_resent_op_keeps_its_original_src() -> None:
    s = Session(src="new")
    (req,) = doc_requests(
        s.receive('{"a":"op","c":"docs","d":"d1","v":1,"seq":2,"src":"old","op":[1]}')
    )
    assert req.src == "old"


def test_create_normalises_the_type_and_rejects_others() -> None:
    s = Session(src="me")
    (req,) = doc_requests(
        s.receive(
            '{"a":"op","c":"docs","d":"d1","seq":1,"create":{"type":"text-unicode","data":"hi"}}'
        )
    )
    assert (req.kind, req.op, req.v) == ("create", {"type": TEXT, "data": "hi"}, None)
    (err,) = frames(s.receive('{"a":"op","c":"docs","d":"d2","seq":2,"create":{"type":"json0"}}'))
    assert err["error"]["code"] == "ERR_DOC_TYPE_NOT_RECOGNIZED"
    assert err["d"] == "d2"


def test_document_error_is_the_request_echoed_with_error() -> None:
    s = Session(src="me")
    (req,) = doc_requests(s.receive('{"a":"op","c":"docs","d":"d1","v":7,"seq":2,"op":[1,"x"]}'))
    (reply,) = frames(
        s.doc_reply(DocError(tag=req.tag, code="ERR_DOC_DOES_NOT_EXIST", message="no such doc"))
    )
    assert reply["a"] == "op"
    assert (reply["v"], reply["seq"], reply["op"]) == (7, 2, [1, "x"])
    assert reply["error"] == {"code": "ERR_DOC_DOES_NOT_EXIST", "message": "no such doc"}


def test_bulk_subscribe_with_ids_answers_once_with_all_snapshots() -> None:
    s = Session(src="me")
    reqs = doc_requests(s.receive('{"a":"bs","c":"docs","b":["d1","d2"]}'))
    assert [r.d for r in reqs] == ["d1", "d2"]
    assert s.doc_reply(DocSnapshot(tag=reqs[0].tag, v=1, type=TEXT, data="a")) == []
    (reply,) = frames(s.doc_reply(DocSnapshot(tag=reqs[1].tag, v=0, type=None)))
    assert reply == {
        "a": "bs",
        "c": "docs",
        "data": {"d1": {"v": 1, "type": TEXT, "data": "a"}, "d2": {"v": 0, "type": None}},
    }
    assert s.subscriptions == {("docs", "d1"), ("docs", "d2")}


def test_bulk_subscribe_with_versions_sends_ops_then_echoes_b() -> None:
    s = Session(src="me")
    reqs = doc_requests(s.receive('{"a":"bs","c":"docs","b":{"d1":5,"d2":2}}'))
    assert {(r.d, r.v) for r in reqs} == {("d1", 5), ("d2", 2)}
    first = frames(s.doc_reply(DocOps(tag=reqs[0].tag, frames=('{"n":1}',))))
    assert first == [{"n": 1}]
    last = frames(s.doc_reply(DocOps(tag=reqs[1].tag, frames=('{"n":2}',))))
    assert last == [{"n": 2}, {"a": "bs", "c": "docs", "b": {"d1": 5, "d2": 2}}]


def test_snapshot_at_version_and_time() -> None:
    s = Session(src="me")
    (req,) = doc_requests(s.receive('{"a":"nf","id":4,"c":"docs","d":"d1","v":2}'))
    assert req == SnapshotAt(tag=req.tag, c="docs", d="d1", version=2)
    (reply,) = frames(s.doc_reply(DocSnapshot(tag=req.tag, v=2, type=TEXT, data="he")))
    assert reply == {"a": "nf", "id": 4, "v": 2, "type": TEXT, "data": "he", "m": None}
    (req,) = doc_requests(s.receive('{"a":"nt","id":5,"c":"docs","d":"d1","ts":1000}'))
    assert (req.version, req.timestamp) == (None, 1000)


def test_unsubscribe_and_close_release_subscriptions() -> None:
    s = Session(src="me")
    s.receive('{"a":"s","c":"docs","d":"d1"}')
    s.receive('{"a":"s","c":"docs","d":"d2"}')
    effects = s.receive('{"a":"u","c":"docs","d":"d1"}')
    assert doc_requests(effects) == [UnsubscribeDoc(c="docs", d="d1")]
    assert frames(effects) == [{"a": "u", "c": "docs", "d": "d1"}]
    assert [e.request for e in s.close()] == [UnsubscribeDoc(c="docs", d="d2")]
    assert s.receive('{"a":"pp"}') == []


def test_ping_and_presence_pass_through() -> None:
    s = Session(src="me")
    assert frames(s.receive('{"a":"pp"}')) == [{"a": "pp"}]
    (cmd,) = s.receive('{"a":"ps","ch":"docs.d1","seq":1}')
    assert isinstance(cmd, PresenceCommand)
    assert cmd.src == "me"
    assert s.presence_channels == {"docs.d1"}


def test_garbage_gets_error_replies_then_a_policy_close() -> None:
    s = Session(src="me", max_bad_frames=3)
    first = s.receive("{oops")
    assert frames(first)[0]["error"]["code"] == "ERR_MESSAGE_BADLY_FORMED"
    s.receive('{"a":"s","c":"docs","d":"ok"}')  # a good frame resets the count
    s.receive('{"a":"zz"}')
    s.receive('{"a":"zz"}')
    last = s.receive('{"a":"zz"}')
    assert Close(CLOSE_POLICY, "3 malformed messages in a row") in last
    assert s.closed


def test_oversize_frame_is_refused_with_the_limit_named() -> None:
    s = Session(src="me", max_frame=100)
    (reply,) = frames(s.receive('{"a":"pp","pad":"' + "x" * 200 + '"}'))
    assert "exceeds the limit of 100" in reply["error"]["message"]


def test_read_only_session_ops_are_rejected() -> None:
    def read_only(c: str, d: str, write: bool) -> bool:
        return not write

    s = Session(src="me", permission=read_only)
    assert doc_requests(s.receive('{"a":"s","c":"docs","d":"d1"}'))
    effects = s.receive('{"a":"op","c":"docs","d":"d1","v":1,"seq":1,"op":["x"]}')
    assert doc_requests(effects) == []
    assert frames(effects)[0]["error"]["code"] == "ERR_OP_SUBMIT_REJECTED"


def test_replies_for_unknown_tags_are_ignored() -> None:
    s = Session(src="me")
    assert s.doc_reply(DocSnapshot(tag=999, v=1, type=TEXT, data="x")) == []
