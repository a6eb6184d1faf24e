"""Every exception mailslot raises, in one tree.

::

    MailslotError
    ├── ActorError                      something about one actor (``actor`` names it)
    │   ├── ActorStopped                the target has stopped; an ask cannot be answered
    │   ├── MailboxFull                 a critical message met a full mailbox or outbox
    │   ├── AskTimeout (+TimeoutError)  no reply to an ask within its timeout
    │   ├── ActorFailed                 an actor's failure escalated past the root
    │   └── InvalidActorName            a child name that is empty, has a '/', or is taken
    ├── MutableMessageError (+TypeError)  debug mode: a message that is not immutable
    ├── SystemShutdown                  the actor system is stopping or stopped
    ├── CodecError (+ValueError)        bytes from outside that do not decode (wire, protocol)
    ├── InvalidKey (+ValueError)        an entity key, entity id or node id that is malformed
    ├── OTError (+ValueError)           an operation that is malformed or does not fit a document
    ├── StoreError                      the op log or snapshot store failed
    │   ├── DuplicateOp                 (document, src, seq) already committed
    │   ├── VersionConflict             an op's version does not follow its document's stored log
    │   └── StoreBusy                   the group committer's queue is full (``submit_nowait``)
    ├── ProtocolError                   a client broke the protocol (``code`` is ShareDB's ERR_…)
    ├── AccessDenied                    a user may not do this to a document
    ├── ConfigError (+ValueError)       a command-line option, URL or config value is wrong
    └── TransportError                  the broker or a remote node cannot be reached
        └── TransportBusy               the broker refused a publish for now (queue full)

Layers below raise only from here; adapters translate their dependencies' exceptions
(``raise StoreError(...) from exc``) so that no dependency's exception type leaks out.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "ActorError",
    "ActorFailed",
    "ActorStopped",
    "AskTimeout",
    "CodecError",
    "ConfigError",
    "DuplicateOp",
    "InvalidActorName",
    "InvalidKey",
    "MailboxFull",
    "MailslotError",
    "MutableMessageError",
    "OTError",
    "ProtocolError",
    "StoreBusy",
    "StoreError",
    "SystemShutdown",
    "TransportBusy",
    "TransportError",
    "VersionConflict",
]


class MailslotError(Exception):
    """Root of every exception mailslot raises on purpose."""


class ActorError(MailslotError):
    """An error about one actor; ``actor`` is its path (or ``None`` when unknown)."""

    def __init__(self, message: str, *, actor: object = None) -> None:
        super().__init__(message)
        self.actor = actor


class ActorStopped(ActorError):
    """The target actor has stopped, so the request cannot be answered."""


class MailboxFull(ActorError):
    """A critical message met a full mailbox (or a full outbox while slowed down).

    ``tell`` raises this; ``await send`` waits for room instead.
    """


class AskTimeout(ActorError, TimeoutError):
    """No reply to an ``ask`` within its timeout."""

    def __init__(self, message: str, *, actor: object = None, timeout: float = 0.0) -> None:
        super().__init__(message, actor=actor)
        self.timeout = timeout


class ActorFailed(ActorError):
    """An actor's failure escalated past the root guardian; the system stopped because of it.

    The original exception is ``__cause__``.
    """


class InvalidActorName(ActorError, ValueError):
    """A child name that is empty, contains ``/`` or ``$``-prefix, or is already taken."""


class MutableMessageError(MailslotError, TypeError):
    """Debug mode found a message that is not immutable (frozen struct/dataclass or a scalar)."""


class SystemShutdown(MailslotError):
    """The actor system is shutting down or has shut down."""


class CodecError(MailslotError, ValueError):
    """Bytes from outside (an AMQP body, a client frame) that do not decode to a valid message."""


class InvalidKey(MailslotError, ValueError):
    """An entity key, entity id or node id that is empty, too long or has a forbidden character.

    ``key`` is the offending value.
    """

    def __init__(self, message: str, *, key: object = None) -> None:
        super().__init__(message)
        self.key = key


class OTError(MailslotError, ValueError):
    """An operation that is malformed, or does not fit the document it is applied to."""


class StoreError(MailslotError):
    """The op log or snapshot store failed; ``doc_id`` names the document when known."""

    def __init__(self, message: str, *, doc_id: str | None = None) -> None:
        super().__init__(message)
        self.doc_id = doc_id


class DuplicateOp(StoreError):
    """An op with this (document, src, seq) is already committed."""


class VersionConflict(StoreError):
    """An op's version does not follow the stored op log of its document.

    Either another op is already stored at that version (two writers for one document), or the
    version skips ahead of the log (an earlier op of the document was not stored). ``collection``,
    ``doc_id`` and ``version`` name the op and ``expected`` is the version the log wanted next.
    ``misfits`` lists ``(position, expected)`` for every op of the rejected batch that does not fit
    (positions index the sequence given to ``commit``).
    """

    def __init__(
        self,
        message: str,
        *,
        collection: str,
        doc_id: str,
        version: int,
        expected: int,
        misfits: tuple[tuple[int, int], ...] = (),
    ) -> None:
        super().__init__(message, doc_id=doc_id)
        self.collection = collection
        self.version = version
        self.expected = expected
        self.misfits = misfits


class StoreBusy(StoreError):
    """The group committer's queue is full; ``submit_nowait`` raises this, ``submit`` waits."""


class ProtocolError(MailslotError):
    """A client broke the protocol; ``code`` is the ShareDB error code sent back (``ERR_…``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AccessDenied(MailslotError):
    """The user may not perform this action on this document."""


class ConfigError(MailslotError, ValueError):
    """A command-line option, database or broker URL, or config value is wrong."""


class TransportError(MailslotError):
    """The broker or a remote node could not be reached or refused a message."""


class TransportBusy(TransportError):
    """The broker refused a publish for now (a queue at its length limit); retry later."""
