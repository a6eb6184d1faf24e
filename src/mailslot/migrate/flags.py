"""Which engine serves a document: the pure flag evaluation behind the cutover.

Theory of operation
-------------------
A :class:`FlagConfig` is a frozen value; :func:`evaluate` maps ``(config, doc_id, user)`` to a
:class:`Decision` (the engine and why) with no clock, no randomness and no I/O, so the same inputs
always answer the same engine, in every process. Rules, first match wins:

1. ``kill_switch`` on: everything goes back to the legacy engine.
2. ``enabled`` off: legacy.
3. ``deny_docs`` / ``deny_users``: legacy (documents known to misbehave on the new engine).
4. ``allow_docs`` / ``allow_users``: actor (internal accounts and documents go first).
5. Percentage rollout: actor when ``bucket(group_id, doc_id) <= percentage``.

The bucket is Unleash's ``normalizedHash`` as used by its ``flexibleRollout`` strategy: murmur3
(x86, 32 bit, seed 0) of ``"<group_id>:<doc_id>"``, unsigned, ``% 100 + 1``, so a number in 1..100
that an Unleash server configured with the same group id computes identically. Raising the
percentage only adds documents (a document in at 10% is in at 20%): rollout is monotone.

The rollout is keyed by document, never by session: every editor of one document must reach the same
engine. ``user`` is the account the decision is made for where one applies; a caller routing a
whole document passes the document's owner (so an internal account's documents move first), not the
user of whichever session opened it.

The run-time switch (REST/CLI) and shadow mode live in :mod:`mailslot.migrate.cutover`; this module
decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import mmh3
import msgspec

from mailslot.errors import ConfigError

__all__ = ["Decision", "Engine", "FlagConfig", "Reason", "bucket", "evaluate", "parse_config"]

Engine = Literal["actor", "legacy"]
"""The new actor engine or the old mutex engine."""

Reason = Literal[
    "kill_switch", "disabled", "deny_doc", "deny_user", "allow_doc", "allow_user", "rollout"
]
"""Which rule decided."""

_Percentage = Annotated[int, msgspec.Meta(ge=0, le=100)]
_GroupId = Annotated[str, msgspec.Meta(min_length=1)]


class FlagConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The cutover flag. The default serves everything from the legacy engine."""

    enabled: bool = False
    kill_switch: bool = False
    percentage: _Percentage = 0
    """Share of documents (0-100) on the actor engine, by stable bucket."""
    group_id: _GroupId = "mailslot.engine"
    """Unleash's ``groupId``: changing it reshuffles which documents are in."""
    allow_docs: frozenset[str] = frozenset()
    allow_users: frozenset[str] = frozenset()
    deny_docs: frozenset[str] = frozenset()
    deny_users: frozenset[str] = frozenset()
    shadow: bool = False
    """Shadow mode: a copy of each committed op also goes to the other engine, for comparison
    (see :mod:`mailslot.migrate.cutover`); it never decides which engine serves."""


class Decision(msgspec.Struct, frozen=True):
    """The engine for a document, the rule that chose it, and the rollout bucket if one was used."""

    engine: Engine
    reason: Reason
    bucket: int | None = None


def bucket(group_id: str, key: str) -> int:
    """Unleash's ``normalizedHash(key, group_id)``: a stable number in 1..100."""
    return int(mmh3.hash(f"{group_id}:{key}", 0, False)) % 100 + 1


def evaluate(config: FlagConfig, doc_id: str, user: str | None = None) -> Decision:
    """Which engine serves ``doc_id`` (for ``user``, where one applies) under ``config``."""
    if config.kill_switch:
        return Decision("legacy", "kill_switch")
    if not config.enabled:
        return Decision("legacy", "disabled")
    if doc_id in config.deny_docs:
        return Decision("legacy", "deny_doc")
    if user is not None and user in config.deny_users:
        return Decision("legacy", "deny_user")
    if doc_id in config.allow_docs:
        return Decision("actor", "allow_doc")
    if user is not None and user in config.allow_users:
        return Decision("actor", "allow_user")
    b = bucket(config.group_id, doc_id)
    return Decision("actor" if b <= config.percentage else "legacy", "rollout", b)


def parse_config(source: Mapping[str, Any] | str | bytes) -> FlagConfig:
    """A :class:`FlagConfig` from a mapping or a JSON document.

    Raises:
        ConfigError: the JSON is malformed, a field is unknown, has the wrong type, or is out of
            range; the message names the field (``$.percentage``).
    """
    try:
        if isinstance(source, str | bytes):
            return msgspec.json.decode(source, type=FlagConfig)
        if not isinstance(source, Mapping):
            raise ConfigError(f"flag config must be a JSON object, got {type(source).__name__}")
        return msgspec.convert(dict(source), FlagConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid flag config: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"flag config is not valid JSON: {exc}") from exc
