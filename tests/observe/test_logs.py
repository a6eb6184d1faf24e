"""Log lines carry the ids: actor, message id, correlation id, trace and span ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from mailslot.errors import ConfigError
from mailslot.observe.compose import combine
from mailslot.observe.logs import MessageLogInstrumentation, configure_logging, parse_level
from mailslot.observe.tracing import TracingInstrumentation
from mailslot.runtime import Actor, ActorRef, Envelope, SupervisorStrategy
from mailslot.testing import TestKit


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    yield out
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


class Handler(Actor):
    """Logs through structlog while handling; fails on 'boom'; passes others on."""

    def __init__(self, to: ActorRef | None = None) -> None:
        self.to = to
        self.log = structlog.get_logger("app")

    def receive(self, message: Any) -> None:
        if message == "boom":
            raise ValueError("boom")
        self.log.info("handling", what=message)
        if self.to is not None:
            self.to.tell(message)


class AsyncHandler(Actor):
    async def receive(self, message: Any) -> None:
        await self.context.system.clock.sleep(1)
        structlog.get_logger("app").info("handled later", what=message)


def test_json_lines_from_structlog_and_from_the_standard_library(stream: io.StringIO) -> None:
    configure_logging("info", json=True, stream=stream)
    structlog.get_logger("app").info("hello", user="ann")
    logging.getLogger("somelib").warning("plain %s", "logging")
    structlog.get_logger("app").debug("not shown")
    first, second = lines(stream)
    assert first["event"] == "hello"
    assert first["user"] == "ann"
    assert first["level"] == "info"
    assert first["logger"] == "app"
    assert "timestamp" in first
    assert second["event"] == "plain logging"
    assert second["level"] == "warning"
    assert second["logger"] == "somelib"


def test_console_format_when_asked(stream: io.StringIO) -> None:
    configure_logging("debug", json=False, stream=stream)
    structlog.get_logger("app").debug("readable", n=1)
    text = stream.getvalue()
    assert "readable" in text
    assert "n=1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_reconfiguring_replaces_the_handler(stream: io.StringIO) -> None:
    other = io.StringIO()
    configure_logging("info", json=True, stream=other)
    configure_logging("info", json=True, stream=stream)
    structlog.get_logger("app").info("once")
    assert len(lines(stream)) == 1
    assert other.getvalue() == ""


def test_bad_level_names_are_config_errors() -> None:
    assert parse_level("debug") == logging.DEBUG
    assert parse_level(" Warning ") == logging.WARNING
    assert parse_level(15) == 15
    with pytest.raises(ConfigError, match="loud"):
        parse_level("loud")


async def test_handler_lines_carry_actor_message_and_trace_ids(stream: io.StringIO) -> None:
    configure_logging("debug", json=True, stream=stream)
    provider = TracerProvider()
    instr = combine(TracingInstrumentation(provider), MessageLogInstrumentation())
    async with TestKit(instrumentation=instr) as kit:
        b = kit.system.spawn(Handler, name="b")
        a = kit.system.spawn(lambda: Handler(b), name="a")
        a.tell("edit")
        await kit.settle()
    provider.shutdown()
    out = lines(stream)
    handling = {line["actor"]: line for line in out if line["event"] == "handling"}
    la, lb = handling["/user/a"], handling["/user/b"]
    assert la["actor_type"] == "Handler"
    assert la["what"] == "edit"
    assert isinstance(la["message_id"], int)
    assert isinstance(lb["message_id"], int)
    assert la["message_id"] != lb["message_id"]
    assert len(la["trace_id"]) == 32
    assert la["trace_id"] == lb["trace_id"]
    assert la["span_id"] != lb["span_id"]
    received = [line for line in out if line["event"] == "message received"]
    assert {line["actor"] for line in received} >= {"/user/a", "/user/b"}
    into_b = next(line for line in received if line["actor"] == "/user/b")
    assert into_b["sender"] == "/user/a"
    assert into_b["message_type"] == "str"
    assert into_b["message_id"] == lb["message_id"]
    assert into_b["trace_id"] == lb["trace_id"]
    sent = [line for line in out if line["event"] == "message sent"]
    assert any(s["target"] == "/user/b" and s.get("actor") == "/user/a" for s in sent)
    # nothing stays bound once the messages are handled
    structlog.get_logger("app").info("after")
    after = lines(stream)[-1]
    assert "actor" not in after
    assert "message_id" not in after
    assert "trace_id" not in after


async def test_coroutine_handlers_keep_their_ids(stream: io.StringIO) -> None:
    configure_logging("info", json=True, stream=stream)
    async with TestKit(instrumentation=MessageLogInstrumentation(log_messages=False)) as kit:
        h = kit.system.spawn(AsyncHandler, name="h")
        h.deliver("x", Envelope(message_id=41, timestamp=0.0, correlation_id=7))
        await kit.advance(1)
    later = next(line for line in lines(stream) if line["event"] == "handled later")
    assert later["actor"] == "/user/h"
    assert later["message_id"] == 41
    assert later["correlation_id"] == 7


async def test_runtime_failure_lines_name_the_actor(stream: io.StringIO) -> None:
    configure_logging("info", json=True, stream=stream)
    async with TestKit() as kit:
        h = kit.system.spawn(Handler, name="h", supervisor=SupervisorStrategy(min_backoff=0))
        h.tell("boom")
        await kit.advance(1)
    failed = next(line for line in lines(stream) if "failed handling" in line["event"])
    assert failed["level"] == "warning"
    assert failed["logger"] == "mailslot.runtime"
    assert failed["actor"] == "/user/h"
    assert "ValueError: boom" in failed["exception"]
