from __future__ import annotations

import inspect

import mailslot.errors as errors


def test_every_error_is_a_mailslot_error_and_exported() -> None:
    classes = {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }
    assert set(classes) == set(errors.__all__)
    for cls in classes.values():
        assert issubclass(cls, errors.MailslotError)


def test_tree_in_docstring_names_every_error() -> None:
    doc = errors.__doc__ or ""
    missing = [name for name in errors.__all__ if name not in doc]
    assert missing == []


def test_stdlib_bases_where_the_meaning_matches() -> None:
    assert issubclass(errors.AskTimeout, TimeoutError)
    assert issubclass(errors.CodecError, ValueError)
    assert issubclass(errors.MutableMessageError, TypeError)
    timeout = errors.AskTimeout("no reply", actor="/user/a", timeout=0.5)
    assert (timeout.actor, timeout.timeout) == ("/user/a", 0.5)
    assert errors.ProtocolError("ERR_X", "bad").code == "ERR_X"
