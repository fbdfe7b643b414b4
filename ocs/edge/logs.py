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


def configure_logging(*, json: bool = False, level: str = "info") -> None:
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
