"""Who may do what: signed session tokens, user names, and the access rules (pure).

Theory of operation
-------------------
*Tokens.* A session token is ``<payload>.<signature>``: the payload is URL-safe base64 of a small
JSON object (``{"u": user, "exp": seconds since the epoch}``), the signature is HMAC-SHA256 of the
payload under the server's secret, also URL-safe base64. :func:`sign_token` and
:func:`verify_token` take the time as an argument; nothing here reads a clock. Verification
compares signatures in constant time and names what was wrong in :class:`AccessDenied`.

*Rules.* A document either has members (an owner and people it was shared with, each ``read``,
``write`` or ``owner``) or it has none. :func:`allowed` is the whole rule:

- an anonymous session (no token, only when the server allows it: the embedded default's dev
  mode) may read and write every document, so the stock ShareDB client works with no set-up;
- a signed-in user may read a document where it has any role, write where it is ``write`` or
  ``owner``, and nothing else. A document nobody owns (created anonymously) is not reachable
  with a token: share it, or create documents with ``POST /api/docs`` which makes the creator
  its owner.

*Grants.* :class:`Grants` is one session's view of its user's roles, taken when the socket opens
and then kept current by :class:`AccessChanged` messages that the server sends to the user's
live sessions whenever a role changes (a share, a revocation). Only the session actor that owns a
``Grants`` touches it, so its check stays a synchronous dictionary lookup on the op path, and a
share or a revocation takes effect on open sessions without a reconnect.

Pure: standard library and :mod:`mailslot.errors` only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from mailslot.errors import AccessDenied, InvalidKey

__all__ = [
    "NAME_PATTERN",
    "AccessChanged",
    "Grants",
    "Role",
    "allowed",
    "check_name",
    "sign_token",
    "verify_token",
]

Role = Literal["owner", "write", "read"]
_WRITERS: Final = frozenset({"owner", "write"})

#: a user name: 1-32 of letters, digits, ``_ . -``, starting with a letter or digit
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def check_name(name: object) -> str:
    """``name`` if it is a valid user name.

    Raises:
        InvalidKey: it is not a string, or not 1-32 of letters, digits, ``_ . -`` starting
            with a letter or a digit (and not ending with ``.``, so ``@bob.`` mentions bob).
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name.endswith("."):
        shown = repr(name)[:40]
        raise InvalidKey(
            f"invalid user name {shown}: use 1-32 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit and not ending with '.'",
            key=name,
        )
    return name


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def sign_token(user: str, *, secret: bytes, now: float, ttl: float) -> str:
    """A token for ``user`` that expires ``ttl`` seconds after ``now``."""
    body = json.dumps({"u": check_name(user), "exp": int(now + ttl)}, separators=(",", ":"))
    payload = _b64(body.encode())
    return f"{payload}.{_mac(secret, payload)}"


def verify_token(token: str, *, secret: bytes, now: float) -> str:
    """The user a valid, unexpired token names.

    Raises:
        AccessDenied: the token is malformed, its signature is wrong, or it has expired.
    """
    if not isinstance(token, str) or len(token) > 1024 or token.count(".") != 1:
        raise AccessDenied("malformed token: expected <payload>.<signature>")
    payload, signature = token.split(".")
    if not hmac.compare_digest(_mac(secret, payload), signature):
        raise AccessDenied("invalid token signature (signed with another secret?)")
    try:
        claims = json.loads(_unb64(payload))
        user, expires = claims["u"], claims["exp"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AccessDenied(f"malformed token payload: {exc}") from None
    if not isinstance(expires, int) or expires <= now:
        raise AccessDenied("the token has expired: sign in again")
    try:
        return check_name(user)
    except InvalidKey as exc:
        raise AccessDenied(f"the token names no valid user: {exc}") from None


def allowed(role: Role | None, *, write: bool) -> bool:
    """The rule for a signed-in user whose role on a document is ``role`` (``None``: none)."""
    if role is None:
        return False
    return role in _WRITERS if write else True


@dataclass(frozen=True, slots=True)
class AccessChanged:
    """``user``'s role on ``collection/doc`` is now ``role`` (``None``: it has none)."""

    user: str
    collection: str
    doc: str
    role: Role | None


class Grants:
    """One session's roles (``None`` user: anonymous, allowed everything); see the module doc.

    Args:
        user: the signed-in user, or ``None`` for an anonymous session.
        roles: its roles when the session opened, by ``(collection, doc)``.
    """

    __slots__ = ("roles", "user")

    def __init__(
        self, user: str | None, roles: Mapping[tuple[str, str], Role] | None = None
    ) -> None:
        self.user = user
        self.roles: dict[tuple[str, str], Role] = dict(roles or {})

    @classmethod
    def of(cls, user: str, memberships: Iterable[tuple[str, str, Role]]) -> Grants:
        """Grants from ``(collection, doc, role)`` triples."""
        return cls(user, {(c, d): role for c, d, role in memberships})

    def __call__(self, c: str, d: str, write: bool) -> bool:
        """The session's permission check: may it read (or write) ``c/d``?"""
        if self.user is None:
            return True
        return allowed(self.roles.get((c, d)), write=write)

    def update(self, change: AccessChanged) -> None:
        """Apply a role change for this session's user (changes for others are ignored)."""
        if change.user != self.user:
            return
        key = (change.collection, change.doc)
        if change.role is None:
            self.roles.pop(key, None)
        else:
            self.roles[key] = change.role
