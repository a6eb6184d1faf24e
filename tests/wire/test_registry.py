from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.errors import CodecError, MutableMessageError
from mailslot.wire import Envelope, MessageRegistry, decode_batch, encode_batch

# --- a small protocol: current versions ------------------------------------------------------


class Submit(msgspec.Struct, frozen=True, tag="doc.submit", array_like=True):
    doc: str
    version: int
    op: list[int | str]
    src: str = ""  # added later with a default: no version bump


class Ack(msgspec.Struct, frozen=True, tag="doc.ack", array_like=True):
    doc: str
    version: int


class Mention(msgspec.Struct, frozen=True, tag="notify.mention", array_like=True):
    """Version 2: one mention names several users (version 1 had a single ``user``)."""

    doc: str
    users: list[str]
    at: int


# --- the wire shapes of earlier releases ---------------------------------------------------------


class SubmitBeforeSrc(msgspec.Struct, frozen=True, tag="doc.submit", array_like=True):
    doc: str
    version: int
    op: list[int | str]


class MentionV1(msgspec.Struct, frozen=True, tag="notify.mention", array_like=True):
    doc: str
    user: str
    at: int


def _upgrade_mention(old: MentionV1) -> Mention:
    return Mention(doc=old.doc, users=[old.user], at=old.at)


def _downgrade_mention(new: Mention) -> MentionV1:
    return MentionV1(doc=new.doc, user=new.users[0], at=new.at)


def make_registry() -> MessageRegistry:
    registry = MessageRegistry("collab")
    registry.register(Submit)
    registry.register(Ack)
    registry.register(
        Mention,
        version=2,
        previous=MentionV1,
        upgrade=_upgrade_mention,
        downgrade=_downgrade_mention,
    )
    return registry


def make_v1_registry() -> MessageRegistry:
    """What a node of the previous release registers."""
    registry = MessageRegistry("collab")
    registry.register(SubmitBeforeSrc)
    registry.register(Ack)
    registry.register(MentionV1)
    return registry


REGISTRY = make_registry()
V1 = make_v1_registry()

_text = st.text(max_size=30)
_int64 = st.integers(-(2**63), 2**63 - 1)
submits = st.builds(
    Submit, doc=_text, version=st.integers(0, 2**40), op=st.lists(_int64 | _text), src=_text
)
acks = st.builds(Ack, doc=_text, version=st.integers(0, 2**40))
mentions = st.builds(
    Mention, doc=_text, users=st.lists(_text, min_size=1), at=st.integers(0, 2**31)
)
messages = submits | acks | mentions


@given(messages)
def test_round_trip(msg: Any) -> None:
    tag, body = REGISTRY.encode(msg)
    assert tag == type(msg).__struct_config__.tag
    assert REGISTRY.decode(tag, body, REGISTRY.schema_version(tag)) == msg
    assert REGISTRY.decode_any(body) == msg


@given(st.lists(messages, max_size=20))
def test_round_trip_through_envelopes_and_a_batch(msgs: list[Any]) -> None:
    envelopes = [
        REGISTRY.envelope(m, id=i.to_bytes(16, "big"), timestamp_ns=i, target="docs/d1")
        for i, m in enumerate(msgs)
    ]
    received = decode_batch(encode_batch(envelopes))
    assert [REGISTRY.open(e) for e in received] == msgs
    assert [e.schema_version for e in received] == [
        2 if isinstance(m, Mention) else 1 for m in msgs
    ]


def test_envelope_carries_every_field() -> None:
    env = REGISTRY.envelope(
        Ack("d1", 3),
        id=b"i" * 16,
        timestamp_ns=5,
        target="/user/a",
        sender="/user/b",
        correlation_id=b"c" * 16,
        reply_to="/user/b/reply",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="vendor=1",
    )
    assert env.tag == "doc.ack"
    assert (env.sender, env.correlation_id, env.reply_to) == ("/user/b", b"c" * 16, "/user/b/reply")
    assert env.tracestate == "vendor=1"
    assert REGISTRY.open(env) == Ack("d1", 3)


def test_registry_introspection() -> None:
    assert [t.tag for t in REGISTRY.message_types] == ["doc.submit", "doc.ack", "notify.mention"]
    mention = REGISTRY.message_types[2]
    assert (mention.cls, mention.version, mention.previous) == (Mention, 2, MentionV1)
    assert REGISTRY.schema_version("notify.mention") == 2


# --- schema evolution ----------------------------------------------------------------------------


@given(st.builds(SubmitBeforeSrc, doc=_text, version=st.integers(0, 2**40), op=st.lists(_text)))
def test_a_field_added_with_a_default_needs_no_version_bump(old: SubmitBeforeSrc) -> None:
    tag, body = V1.encode(old)
    new = REGISTRY.decode(tag, body, 1)
    assert new == Submit(doc=old.doc, version=old.version, op=old.op, src="")


def test_an_old_reader_ignores_the_added_field() -> None:
    tag, body = REGISTRY.encode(Submit("d1", 4, [1, "x"], src="conn-7"))
    assert V1.decode(tag, body, 1) == SubmitBeforeSrc("d1", 4, [1, "x"])


@given(st.builds(MentionV1, doc=_text, user=_text, at=st.integers(0, 2**31)))
def test_v1_bodies_decode_under_v2_by_upgrading(old: MentionV1) -> None:
    tag, body = V1.encode(old)
    assert V1.schema_version(tag) == 1
    assert REGISTRY.decode(tag, body, 1) == Mention(doc=old.doc, users=[old.user], at=old.at)


def test_a_v1_body_is_not_a_valid_v2_body() -> None:
    # Retyping a field is why the version was bumped: v1 bytes read as v2 are refused.
    tag, body = V1.encode(MentionV1("d1", "ann", 3))
    with pytest.raises(CodecError, match=r"'notify.mention' v2 body: Expected `array`"):
        REGISTRY.decode(tag, body, 2)


def test_downgrade_for_a_rolling_upgrade() -> None:
    tag, body = REGISTRY.encode(Mention("d1", ["ann", "bob"], 3), version=1)
    assert V1.decode(tag, body, 1) == MentionV1("d1", "ann", 3)
    env = REGISTRY.envelope(
        Mention("d1", ["ann"], 3), id=b"i", timestamp_ns=0, target="t", version=1
    )
    assert env.schema_version == 1
    assert V1.open(env) == MentionV1("d1", "ann", 3)


@pytest.mark.parametrize("version", [0, 3, 99])
def test_only_the_current_and_previous_versions_are_accepted(version: int) -> None:
    tag, body = REGISTRY.encode(Mention("d1", ["ann"], 3))
    with pytest.raises(CodecError, match=rf"no schema version {version} .*accepted: 1 and 2"):
        REGISTRY.decode(tag, body, version)


def test_a_type_without_previous_accepts_one_version() -> None:
    tag, body = REGISTRY.encode(Ack("d1", 1))
    with pytest.raises(CodecError, match=r"no schema version 2 .*accepted: 1\)"):
        REGISTRY.decode(tag, body, 2)


def test_encode_at_a_version_without_downgrade() -> None:
    with pytest.raises(CodecError, match="no downgrade"):
        REGISTRY.encode(Ack("d1", 1), version=0)
    with pytest.raises(CodecError, match="schema version 5"):
        REGISTRY.encode(Mention("d1", ["a"], 1), version=5)


def test_a_failing_upgrade_is_a_codec_error() -> None:
    registry = MessageRegistry("strict")

    def refuse(old: MentionV1) -> Mention:
        raise ValueError(f"user {old.user!r} unknown")

    registry.register(Mention, version=2, previous=MentionV1, upgrade=refuse)
    tag, body = V1.encode(MentionV1("d1", "zed", 1))
    with pytest.raises(CodecError, match=r"cannot upgrade 'notify\.mention' from v1 to v2") as info:
        registry.decode(tag, body, 1)
    assert isinstance(info.value.__cause__, ValueError)


# --- errors on bad input -------------------------------------------------------------------------


def test_unknown_tag() -> None:
    with pytest.raises(CodecError, match=r"unknown message type 'doc\.nope' in registry 'collab'"):
        REGISTRY.decode("doc.nope", b"\x90", 1)
    with pytest.raises(CodecError, match="unknown message type"):
        REGISTRY.schema_version("doc.nope")


def test_body_of_another_type_is_refused() -> None:
    _, body = REGISTRY.encode(Submit("d1", 1, []))
    with pytest.raises(
        CodecError, match=r"malformed 'doc.ack' v1 body: Invalid value 'doc.submit'"
    ):
        REGISTRY.decode("doc.ack", body, 1)


def test_wrong_field_type_names_the_position() -> None:
    body = msgspec.msgpack.encode(["doc.ack", "d1", "three"])
    with pytest.raises(CodecError, match=r"Expected `int`, got `str` - at `\$\[2\]`"):
        REGISTRY.decode("doc.ack", body, 1)


def test_encoding_an_unregistered_type() -> None:
    with pytest.raises(CodecError, match="MentionV1 is not registered in registry 'collab'"):
        REGISTRY.encode(MentionV1("d", "u", 1))


def test_encoding_an_unencodable_value() -> None:
    with pytest.raises(CodecError, match=r"cannot encode 'doc\.ack'"):
        REGISTRY.encode(Ack("d1", 2**70))


def test_decode_any_on_an_empty_registry() -> None:
    with pytest.raises(CodecError, match="has no message types"):
        MessageRegistry("empty").decode_any(b"\x90")


@given(st.sampled_from(["doc.submit", "doc.ack", "notify.mention"]), st.integers(1, 2), st.binary())
def test_arbitrary_bodies_raise_only_codec_error(tag: str, version: int, body: bytes) -> None:
    for decode in (lambda: REGISTRY.decode(tag, body, version), lambda: REGISTRY.decode_any(body)):
        try:
            decoded = decode()
        except CodecError:
            continue
        assert isinstance(decoded, Submit | Ack | Mention)


@given(messages, st.data())
def test_mutated_bodies_raise_only_codec_error(msg: Any, data: st.DataObject) -> None:
    tag, body = REGISTRY.encode(msg)
    raw = bytearray(body)
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    for candidate in (bytes(raw), body[: data.draw(st.integers(0, len(body) - 1))]):
        with contextlib.suppress(CodecError):
            REGISTRY.decode(tag, candidate, REGISTRY.schema_version(tag))


def test_deeply_nested_body_is_a_codec_error() -> None:
    body = b"\x93\xaadoc.submit\xa1d\x01\x91" + b"\x91" * 100_000
    with pytest.raises(CodecError):
        REGISTRY.decode("doc.submit", body, 1)


# --- registration is checked ---------------------------------------------------------------------


class Mutable(msgspec.Struct, tag="m", array_like=True):
    x: int


class Untagged(msgspec.Struct, frozen=True, array_like=True):
    x: int


class IntTagged(msgspec.Struct, frozen=True, tag=5, array_like=True):
    x: int


class MapLayout(msgspec.Struct, frozen=True, tag="map"):
    x: int


class OtherTag(msgspec.Struct, frozen=True, tag="other", array_like=True):
    x: int


@pytest.mark.parametrize(
    ("cls", "error", "message"),
    [
        (dict, TypeError, "must be a msgspec.Struct subclass"),
        (Mutable, MutableMessageError, "must be a frozen Struct"),
        (Untagged, TypeError, "needs a string tag"),
        (IntTagged, TypeError, "needs a string tag"),
        (MapLayout, TypeError, "one union decoder needs one layout"),
        (Ack, ValueError, "tag 'doc.ack' is already registered"),
    ],
)
def test_bad_registrations(cls: Any, error: type[Exception], message: str) -> None:
    registry = make_registry()
    with pytest.raises(error, match=message):
        registry.register(cls)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": 0}, "must be in 1..65535"),
        ({"version": 2, "previous": MentionV1}, "no upgrade function"),
        ({"version": 1, "previous": MentionV1, "upgrade": _upgrade_mention}, "must be >= 2"),
        ({"version": 2, "previous": OtherTag, "upgrade": _upgrade_mention}, "must keep the tag"),
        ({"upgrade": _upgrade_mention}, "but no previous version"),
    ],
)
def test_bad_version_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MessageRegistry().register(Mention, **kwargs)


def test_a_map_layout_registry_works_too() -> None:
    registry = MessageRegistry("maps")
    registry.register(MapLayout)
    tag, body = registry.encode(MapLayout(3))
    assert b"x" in body  # field names on the wire
    assert registry.decode(tag, body, 1) == registry.decode_any(body) == MapLayout(3)


def test_open_checks_the_envelope_tag_against_the_body() -> None:
    env = REGISTRY.envelope(Submit("d1", 1, []), id=b"i", timestamp_ns=0, target="t")
    forged = msgspec.structs.replace(env, tag="doc.ack")
    assert isinstance(forged, Envelope)
    with pytest.raises(CodecError, match=r"Invalid value 'doc\.submit'"):
        REGISTRY.open(forged)


def test_the_current_decoder_of_a_tag_decodes_what_encode_made() -> None:
    msg = Ack(doc="d1", version=3)
    tag, body = REGISTRY.encode(msg)
    assert REGISTRY.decoder(tag).decode(body) == msg
    with pytest.raises(CodecError, match="unknown message type"):
        REGISTRY.decoder("nope")
