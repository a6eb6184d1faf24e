"""Structured logs: structlog over the standard library, with the ids that tie lines together.

Theory of operation
-------------------
:func:`configure_logging` installs one handler on the root logger whose formatter is structlog's
``ProcessorFormatter``: lines from structlog loggers and from plain ``logging`` loggers (the
runtime logs through ``logging.getLogger("mailslot.runtime")``; so do libraries) go through the same
processors and come out as JSON lines, or as a readable console format in a terminal. Every line
gets a timestamp, the level, the logger name, the ids bound in structlog's context variables, and
the current OpenTelemetry trace and span ids when a span is current.

:class:`MessageLogInstrumentation` binds ``actor``, ``actor_type``, ``message_id`` and
``correlation_id`` (structlog context variables) while a message is handled, so any line a handler
logs carries them (and the trace id, when tracing is on); with ``log_messages`` it also logs every
message sent and received at debug level. Binding follows the tracing rules (see
:mod:`mailslot.observe.tracing`): bound in ``message_begin``, copied into a coroutine handler's
task, reset in the dispatcher at the end of the message or of the turn.

The runtime's own lines are formatted strings (``"%s (%s) failed ..."``) whose first argument is the
actor path; a processor lifts it into an ``actor`` field.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import Token
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from mailslot.errors import ConfigError
from mailslot.observe.scopes import Scope, ScopeStack
from mailslot.runtime import ActorRef, Envelope, Instrumentation

__all__ = [
    "MessageLogInstrumentation",
    "add_trace_ids",
    "configure_logging",
    "parse_level",
]

_MARK = "_mailslot_handler"


def parse_level(level: str | int) -> int:
    """A logging level from a name (``debug``, ``INFO``, ...) or a number.

    Raises:
        ConfigError: the name is not a level.
    """
    if isinstance(level, int):
        return level
    value = logging.getLevelNamesMapping().get(level.strip().upper())
    if value is None:
        raise ConfigError(
            f"log level {level!r} is not one of debug, info, warning, error, critical"
        )
    return value


def add_trace_ids(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Add ``trace_id`` and ``span_id`` (hex) of the current OpenTelemetry span, if any."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", f"{ctx.trace_id:032x}")
        event_dict.setdefault("span_id", f"{ctx.span_id:016x}")
    return event_dict


def _actor_from_runtime_args(
    logger: WrappedLogger, method: str, event_dict: EventDict
) -> EventDict:
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if (
        isinstance(record, logging.LogRecord)
        and record.name.startswith("mailslot.runtime")
        and "actor" not in event_dict
        and isinstance(args, tuple)
        and args
        and isinstance(args[0], str)
        and args[0].startswith("/")
    ):
        event_dict["actor"] = args[0]
    return event_dict


def configure_logging(
    level: str | int = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Send every log line, structlog's and the standard library's, through structlog.

    Calling it again replaces the previous configuration (not other handlers on the root logger).

    Args:
        level: the lowest level logged (a name or a number).
        json: JSON lines (True) or the console format (False); by default JSON unless ``stream``
            is a terminal.
        stream: where lines go (standard error by default).

    Raises:
        ConfigError: ``level`` is not a level name.
    """
    lvl = parse_level(level)
    out = stream if stream is not None else sys.stderr
    as_json = json if json is not None else not _isatty(out)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    renderer: Processor
    if as_json:
        final: list[Processor] = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))
        final = [renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.ExtraAdder(),
            _actor_from_runtime_args,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        pass_foreign_args=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # loggers made before a reconfiguration (tests, `serve --log-level`) must follow it
        cache_logger_on_first_use=False,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _unbind(tokens: Mapping[str, Token[Any]]) -> Callable[[], None]:
    def undo() -> None:
        # ValueError: bound in another context, so there is nothing to undo here
        with contextlib.suppress(ValueError):
            structlog.contextvars.reset_contextvars(**tokens)

    return undo


class MessageLogInstrumentation(Instrumentation):
    """Bind message ids to log lines during handling; optionally log every message at debug.

    Put it after a :class:`~mailslot.observe.tracing.TracingInstrumentation` in a composite, so the
    span is current when it logs (the lines then carry the trace id too).

    Args:
        logger: a structlog logger (``structlog.get_logger("mailslot.messages")`` by default).
        log_messages: log ``message sent`` / ``message received`` / ``message failed`` at debug.
    """

    per_message = True
    stamps_envelopes = True

    def __init__(self, logger: Any = None, *, log_messages: bool = True) -> None:
        self._log = logger if logger is not None else structlog.get_logger("mailslot.messages")
        self.log_messages = log_messages
        self._bound = ScopeStack()

    def outgoing(self, sender: ActorRef | None, target: ActorRef, message: Any) -> str | None:
        if self.log_messages:
            self._log.debug(
                "message sent",
                sender=sender.path if sender is not None else None,
                target=target.path,
                message_type=type(message).__name__,
            )
        return None

    def message_begin(
        self, ref: ActorRef, actor_type: str, message: Any, envelope: Envelope | None
    ) -> Scope:
        ids: MutableMapping[str, Any] = {"actor": ref.path, "actor_type": actor_type}
        sender = None
        if envelope is not None:
            ids["message_id"] = envelope.message_id
            if envelope.correlation_id is not None:
                ids["correlation_id"] = envelope.correlation_id
            sender = envelope.sender.path if envelope.sender is not None else None
        bound = self._bound.open(_unbind(structlog.contextvars.bind_contextvars(**ids)))
        if self.log_messages:
            self._log.debug("message received", message_type=type(message).__name__, sender=sender)
        return bound

    def message_end(
        self,
        ref: ActorRef,
        actor_type: str,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        if not isinstance(token, Scope):
            return
        if error is not None and self.log_messages:
            self._log.debug("message failed", error=repr(error), seconds=seconds)
        self._bound.close(token)  # a plain handler's: still bound, and on top

    def batch(self, ref: ActorRef, actor_type: str, count: int, seconds: float, depth: int) -> None:
        self._bound.close_all()
