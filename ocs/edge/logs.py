"""structlog set-up: human-readable console output by default, JSON lines with a flag.

Log lines are bounded whatever a peer sends: `cut_long_values`, the one processor every line
goes through before it is rendered, cuts each value (peer-provided strings such as an
Origin-Host, a Session-Id or an error text, and the text of anything else that is not a
number) to `MAX_LOG_STRING` characters, and a rendered exception to `MAX_LOG_EXCEPTION`
(docs/protocol.md, "Limits").
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from protocol.codes import ResultCode
from protocol.limits import MAX_LOG_EXCEPTION, MAX_LOG_STRING


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more]"


def cut_long_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Cut every value of a log line to MAX_LOG_STRING characters (the `exception` text to
    MAX_LOG_EXCEPTION): a string is cut, anything else that is not a number, bool or None is
    replaced by its cut text when its text is longer."""
    for key, value in event_dict.items():
        if value is None or isinstance(value, bool | int | float):
            continue
        limit = MAX_LOG_EXCEPTION if key == "exception" else MAX_LOG_STRING
        if isinstance(value, str):
            if len(value) > limit:
                event_dict[key] = cut(value, limit)
            continue
        text = repr(value)
        if len(text) > limit:
            event_dict[key] = cut(text, limit)
    return event_dict


def result_names(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A Result-Code is logged as its number with its name: each integer value of a key
    ending in ``result_code`` is written as a plain number (never an enum's repr) and followed
    by ``<prefix>result_name``: ``result_code=5012 result_name=DIAMETER_UNABLE_TO_COMPLY``
    (``unknown`` for a number no Diameter application here defines)."""
    named: dict[str, str] = {}
    for key, value in event_dict.items():
        if key.endswith("result_code") and isinstance(value, int) and not isinstance(value, bool):
            event_dict[key] = int(value)
            named[key[: -len("code")] + "name"] = result_code_name(int(value))
    event_dict.update(named)
    return event_dict


def result_code_name(code: int) -> str:
    """``DIAMETER_UNABLE_TO_COMPLY`` for 5012 (RFC 6733 / RFC 4006 names)."""
    try:
        return f"DIAMETER_{ResultCode(code).name}"
    except ValueError:
        return "unknown"


def startup_tracebacks(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``--debug``: `startup.failed`, logged while its exception is handled, carries the
    traceback (rendered as text by the console, as the ``exception`` string in JSON)."""
    if event_dict.get("event") == "startup.failed" and sys.exc_info()[0] is not None:
        event_dict.setdefault("exc_info", True)
    return event_dict


def configure_logging(*, json: bool = False, level: str = "info", debug: bool = False) -> None:
    """Log lines on stderr: console format, or JSON (one object per line) with ``json``.
    ``debug``: the traceback of a failed start-up goes with its `startup.failed` event."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            *([startup_tracebacks] if debug else []),
            result_names,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # the traceback as text, to be cut
            cut_long_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
