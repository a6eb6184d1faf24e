"""Typed message bodies: a registry of tagged msgspec structs and their schema versions.

Theory of operation
-------------------
A protocol (the document messages, the presence messages, ...) owns one :class:`MessageRegistry`
and registers each of its message types once, at import time. A message type is a frozen msgspec
struct with a string ``tag``; the tag is what an :class:`~mailslot.wire.envelope.Envelope` carries
in its ``tag`` field, and it is also inside the body, so a body that is given to the wrong type is
refused rather than misread.

``encode(msg)`` gives ``(tag, body)``; ``decode(tag, body, schema_version)`` picks the decoder of
that tag and version and validates the body against the struct, so a malformed body is a
:class:`~mailslot.errors.CodecError` naming the tag, the version and the offending field (routed
to a dead-letter queue by the caller), never a crash. Nothing but ``CodecError`` leaves
``decode``.

Schema evolution (DESIGN.md section 3):

- Adding a field with a default needs no new version: an old body decodes under the new struct with
  the default filled in, and an old reader ignores the new field.
- Removing or retyping a field needs a version bump. Register the new struct with
  ``version=n`` and the old struct (same tag) as ``previous`` together with an ``upgrade`` function
  from old to new; a receiver then accepts versions ``n`` and ``n - 1``, and nothing older. An
  optional ``downgrade`` lets a sender keep emitting ``n - 1`` during a rolling upgrade, until every
  receiver reads ``n``.

All current types of one registry must share their layout (``array_like`` or not) and their
``tag_field``, because :meth:`MessageRegistry.decode_any` decodes a body with one msgspec union of
them. The registry is a plain object: register at import time, then only read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, Union

import msgspec

from mailslot.errors import CodecError, MutableMessageError

from .envelope import Envelope

__all__ = ["MessageRegistry", "MessageType"]

M = TypeVar("M", bound=msgspec.Struct)

_DECODE_ERRORS = (msgspec.DecodeError, RecursionError)
_ENCODE_ERRORS = (msgspec.EncodeError, TypeError, ValueError, OverflowError)


class MessageType(msgspec.Struct, frozen=True):
    """What a registry knows about one registered message type.

    Attributes:
        tag: The wire tag.
        cls: The current struct.
        version: The current schema version.
        previous: The struct of version ``version - 1``, if that version is still accepted.
    """

    tag: str
    cls: type[msgspec.Struct]
    version: int
    previous: type[msgspec.Struct] | None = None


class _Entry:
    __slots__ = ("decoder", "downgrade", "info", "previous_decoder", "tag", "upgrade", "version")

    def __init__(
        self,
        info: MessageType,
        upgrade: Callable[[Any], msgspec.Struct] | None,
        downgrade: Callable[[Any], msgspec.Struct] | None,
    ) -> None:
        self.info = info
        self.tag = info.tag
        self.version = info.version
        self.decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(info.cls)
        self.previous_decoder: msgspec.msgpack.Decoder[Any] | None = (
            None if info.previous is None else msgspec.msgpack.Decoder(info.previous)
        )
        self.upgrade = upgrade
        self.downgrade = downgrade


def _check_struct(cls: object, what: str) -> tuple[str, msgspec.structs.StructConfig]:
    if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
        raise TypeError(f"{what} must be a msgspec.Struct subclass, got {cls!r}")
    config = cls.__struct_config__
    if not config.frozen:
        raise MutableMessageError(f"{what} {cls.__name__} must be a frozen Struct (frozen=True)")
    if not isinstance(config.tag, str):
        raise TypeError(
            f"{what} {cls.__name__} needs a string tag (tag='...' or tag=True), got {config.tag!r}"
        )
    return config.tag, config


class MessageRegistry:
    """The typed messages of one protocol, with their tags and schema versions.

    Args:
        name: Used in error messages (``"collab"``, ``"presence"``).
    """

    def __init__(self, name: str = "messages") -> None:
        self.name = name
        self._by_tag: dict[str, _Entry] = {}
        self._by_cls: dict[type[msgspec.Struct], _Entry] = {}
        # (array_like, tag_field), shared by all types of the registry
        self._layout: tuple[bool, str | None] | None = None
        self._union: msgspec.msgpack.Decoder[Any] | None = None
        self._encode = msgspec.msgpack.Encoder().encode

    def register(
        self,
        cls: type[M],
        *,
        version: int = 1,
        previous: type[msgspec.Struct] | None = None,
        upgrade: Callable[[Any], M] | None = None,
        downgrade: Callable[[M], msgspec.Struct] | None = None,
    ) -> type[M]:
        """Register a message type; returns ``cls`` so that it can be used as a decorator.

        Args:
            cls: A frozen msgspec struct with a string tag.
            version: Its current schema version (1 or more).
            previous: The struct of ``version - 1`` (same tag), still accepted on receipt.
            upgrade: Turns a ``previous`` instance into a ``cls`` instance; required with
                ``previous``.
            downgrade: Turns a ``cls`` instance into a ``previous`` one, for
                ``encode(msg, version=version - 1)`` during a rolling upgrade.

        Raises:
            MutableMessageError: ``cls`` or ``previous`` is not frozen.
            TypeError: not a msgspec struct, no string tag, or a layout (``array_like``,
                ``tag_field``) different from the types already registered.
            ValueError: the tag is taken, or the versions, ``previous`` and ``upgrade`` do not fit
                together.
        """
        tag, config = _check_struct(cls, "message type")
        if tag in self._by_tag:
            raise ValueError(f"tag {tag!r} is already registered in registry {self.name!r}")
        if not isinstance(version, int) or not 1 <= version <= 65535:
            raise ValueError(f"schema version of {tag!r} must be in 1..65535, got {version!r}")
        layout = (config.array_like, config.tag_field)
        if self._layout is not None and layout != self._layout:
            raise TypeError(
                f"{cls.__name__} has array_like={layout[0]}, tag_field={layout[1]!r} but registry "
                f"{self.name!r} holds array_like={self._layout[0]}, tag_field={self._layout[1]!r}; "
                "one union decoder needs one layout"
            )
        if previous is not None:
            previous_tag, _ = _check_struct(previous, "previous version")
            if previous_tag != tag:
                raise ValueError(
                    f"previous version of {tag!r} must keep the tag, got {previous_tag!r}"
                )
            if version < 2:
                raise ValueError(f"{tag!r} has a previous version, so its version must be >= 2")
            if upgrade is None:
                raise ValueError(f"{tag!r} has a previous version but no upgrade function")
        elif upgrade is not None or downgrade is not None:
            raise ValueError(f"{tag!r} has an upgrade or downgrade but no previous version")
        entry = _Entry(MessageType(tag, cls, version, previous), upgrade, downgrade)
        self._layout = layout
        self._by_tag[tag] = entry
        self._by_cls[cls] = entry
        self._union = None
        return cls

    @property
    def message_types(self) -> tuple[MessageType, ...]:
        """Every registered type, in registration order."""
        return tuple(entry.info for entry in self._by_tag.values())

    def schema_version(self, tag: str) -> int:
        """The current schema version of ``tag``.

        Raises:
            CodecError: the tag is not registered.
        """
        return self._entry(tag).version

    def decoder(self, tag: str) -> msgspec.msgpack.Decoder[Any]:
        """The decoder of ``tag``'s current schema version (for callers that dispatch by tag
        themselves and call :meth:`decode` only for what this one refuses).

        Raises:
            CodecError: the tag is not registered here.
        """
        return self._entry(tag).decoder

    def encode(self, msg: msgspec.Struct, *, version: int | None = None) -> tuple[str, bytes]:
        """Encode a registered message; returns ``(tag, body)``.

        Args:
            msg: An instance of a registered type.
            version: ``None`` for the current version, or the previous one when the type was
                registered with a ``downgrade``.

        Raises:
            CodecError: the type is not registered, it cannot be encoded at that version, or a
                field holds a value msgpack cannot carry.
        """
        entry = self._by_cls.get(type(msg))
        if entry is None:
            raise CodecError(
                f"message type {type(msg).__qualname__} is not registered in registry {self.name!r}"
            )
        if version is not None and version != entry.version:
            msg = self._downgrade(entry, msg, version)
        try:
            return entry.tag, self._encode(msg)
        except _ENCODE_ERRORS as exc:
            raise CodecError(f"cannot encode {entry.tag!r}: {exc}") from exc

    def _downgrade(self, entry: _Entry, msg: msgspec.Struct, version: int) -> msgspec.Struct:
        if version != entry.version - 1 or entry.downgrade is None:
            raise CodecError(
                f"cannot encode {entry.tag!r} as schema version {version}: it is at version "
                f"{entry.version}"
                + ("" if entry.downgrade else " and has no downgrade to the previous one")
            )
        return entry.downgrade(msg)

    def decode(
        self, tag: str, body: bytes | bytearray | memoryview, schema_version: int
    ) -> msgspec.Struct:
        """Decode and validate a body, upgrading a previous-version body to the current struct.

        Raises:
            CodecError: unknown tag, unknown schema version, or a body that does not match the
                struct (the message names the field).
        """
        entry = self._by_tag.get(tag)
        if entry is None or schema_version != entry.version:
            return self._decode_other(entry, tag, body, schema_version)
        try:
            msg: msgspec.Struct = entry.decoder.decode(body)
        except _DECODE_ERRORS as exc:
            raise CodecError(f"malformed {tag!r} v{schema_version} body: {exc}") from exc
        return msg

    def _decode_other(
        self,
        entry: _Entry | None,
        tag: str,
        body: bytes | bytearray | memoryview,
        schema_version: int,
    ) -> msgspec.Struct:
        """``decode`` of an unknown tag, or of a version other than the current one."""
        if entry is None:
            raise CodecError(f"unknown message type {tag!r} in registry {self.name!r}")
        if (
            entry.previous_decoder is None
            or entry.upgrade is None
            or schema_version != entry.version - 1
        ):
            newest = entry.version
            accepted = f"{newest - 1} and {newest}" if entry.previous_decoder else newest
            raise CodecError(
                f"message type {tag!r} has no schema version {schema_version!r} in registry "
                f"{self.name!r} (accepted: {accepted})"
            )
        try:
            old = entry.previous_decoder.decode(body)
        except _DECODE_ERRORS as exc:
            raise CodecError(f"malformed {tag!r} v{schema_version} body: {exc}") from exc
        try:
            return entry.upgrade(old)
        except Exception as exc:  # upgrade functions see outside data; report, do not crash
            raise CodecError(
                f"cannot upgrade {tag!r} from v{schema_version} to v{entry.version}: {exc}"
            ) from exc

    def decode_any(self, body: bytes | bytearray | memoryview) -> msgspec.Struct:
        """Decode a current-version body of any registered type by its embedded tag.

        One msgspec union decoder over the registry's current types does the dispatch.

        Raises:
            CodecError: the registry is empty, or the body is not one of its types.
        """
        union = self._union
        if union is None:
            if not self._by_tag:
                raise CodecError(f"registry {self.name!r} has no message types")
            types = tuple(entry.info.cls for entry in self._by_tag.values())
            union = self._union = msgspec.msgpack.Decoder(
                types[0] if len(types) == 1 else _union_of(types)
            )
        try:
            decoded: msgspec.Struct = union.decode(body)
        except _DECODE_ERRORS as exc:
            raise CodecError(f"malformed body for registry {self.name!r}: {exc}") from exc
        return decoded

    def envelope(
        self,
        msg: msgspec.Struct,
        *,
        id: bytes,
        timestamp_ns: int,
        target: str,
        sender: str | None = None,
        correlation_id: bytes | None = None,
        reply_to: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        version: int | None = None,
    ) -> Envelope:
        """Encode ``msg`` and wrap it in an :class:`Envelope` with its tag and schema version.

        Raises:
            CodecError: as :meth:`encode`.
        """
        tag, body = self.encode(msg, version=version)
        return Envelope(
            id,
            timestamp_ns,
            target,
            tag,
            self._by_tag[tag].version if version is None else version,
            body,
            sender,
            correlation_id,
            reply_to,
            traceparent,
            tracestate,
        )

    def open(self, envelope: Envelope) -> msgspec.Struct:
        """Decode the body of ``envelope`` (``decode(envelope.tag, envelope.body, ...)``).

        Raises:
            CodecError: as :meth:`decode`.
        """
        return self.decode(envelope.tag, envelope.body, envelope.schema_version)

    def _entry(self, tag: str) -> _Entry:
        entry = self._by_tag.get(tag)
        if entry is None:
            raise CodecError(f"unknown message type {tag!r} in registry {self.name!r}")
        return entry


def _union_of(types: tuple[type[msgspec.Struct], ...]) -> Any:
    return Union[types]  # noqa: UP007  (a runtime union of a tuple of types)
