"""Every log event is documented (issue 12, item 3): each event name the code logs (a string
literal as the first argument of a logger's ``debug``/``info``/``warning``/``error``/
``critical``, or of the node's ``_fatal``) appears in docs/operations.md, *Logs*."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from tests.conftest import ROOT

LEVELS = frozenset({"debug", "info", "warning", "error", "critical", "exception", "_fatal"})
EVENT = re.compile(r"[a-z_]+\.[a-z_]+")


def logged_events() -> Iterator[tuple[str, str]]:
    for folder in ("ocs", "protocol", "rating"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else None
                first = node.args[0]
                if (
                    name in LEVELS
                    and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and EVENT.fullmatch(first.value)
                ):
                    yield first.value, f"{path.relative_to(ROOT)}:{node.lineno}"


def test_every_logged_event_is_in_the_operations_guide() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    events = dict(logged_events())
    assert {"startup.failed", "recovery.done", "journal.failed", "link.lost"} <= set(events)
    missing = {event: where for event, where in events.items() if f"`{event}`" not in doc}
    assert not missing, f"log events not listed in docs/operations.md: {missing}"
