"""Tokens, user names and the access rules (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.collab.access import (
    AccessChanged,
    Grants,
    allowed,
    check_name,
    sign_token,
    verify_token,
)
from mailslot.errors import AccessDenied, InvalidKey

SECRET = b"s3cret"


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}[A-Za-z0-9_-]", fullmatch=True))
def test_tokens_round_trip(name: str) -> None:
    token = sign_token(name, secret=SECRET, now=1000.0, ttl=60)
    assert verify_token(token, secret=SECRET, now=1059.0) == name


def test_tokens_are_refused_when_forged_expired_or_malformed() -> None:
    token = sign_token("ann", secret=SECRET, now=1000.0, ttl=60)
    with pytest.raises(AccessDenied, match="expired"):
        verify_token(token, secret=SECRET, now=1060.0)
    with pytest.raises(AccessDenied, match="signature"):
        verify_token(token, secret=b"other", now=1000.0)
    _, signature = token.split(".")
    bob = sign_token("bob", secret=SECRET, now=1000.0, ttl=60).split(".")[0]
    with pytest.raises(AccessDenied, match="signature"):
        verify_token(f"{bob}.{signature}", secret=SECRET, now=1000.0)
    for bad in ("", "abc", "a.b.c", "x" * 2000):
        with pytest.raises(AccessDenied, match=r"malformed|signature"):
            verify_token(bad, secret=SECRET, now=1000.0)


@pytest.mark.parametrize("name", ["", "-ann", "a b", "bob.", "x" * 33, "ann@x", None, 3])
def test_bad_names_are_refused_with_the_rule(name: object) -> None:
    with pytest.raises(InvalidKey, match="invalid user name"):
        check_name(name)


def test_rules() -> None:
    assert allowed("owner", write=True)
    assert allowed("write", write=True)
    assert not allowed("read", write=True)
    assert allowed("read", write=False)
    assert not allowed(None, write=False)


def test_grants_follow_changes_for_their_user_only() -> None:
    anonymous = Grants(None)
    assert anonymous("docs", "any", True)
    g = Grants.of("bob", [("docs", "d1", "read")])
    assert g("docs", "d1", False)
    assert not g("docs", "d1", True)
    assert not g("docs", "d2", False)
    g.update(AccessChanged("bob", "docs", "d1", "write"))
    g.update(AccessChanged("ann", "docs", "d2", "owner"))  # someone else's: ignored
    assert g("docs", "d1", True)
    assert not g("docs", "d2", False)
    g.update(AccessChanged("bob", "docs", "d1", None))
    assert not g("docs", "d1", False)
