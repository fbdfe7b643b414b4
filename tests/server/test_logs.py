"""Bounded log lines (issue 16 part 6; docs/protocol.md "Limits"): every value of a line is cut
to MAX_LOG_STRING characters, a traceback to MAX_LOG_EXCEPTION, in both renderings.
The end-to-end bound (log growth against what a hostile peer sends) is in
tests/conformance/test_s2_limits.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from ocs.edge.logs import configure_logging, cut, cut_long_values
from protocol.codes import ResultCode
from protocol.limits import MAX_LOG_EXCEPTION, MAX_LOG_STRING


@pytest.fixture
def reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_cut_says_how_much_was_cut() -> None:
    assert cut("abc", 3) == "abc"
    assert cut("abcdef", 3) == "abc...[3 more]"


def test_every_value_is_cut() -> None:
    line = cut_long_values(
        None,
        "info",
        {
            "event": "peer.open",
            "peer": "h" * 60_000,
            "items": ["x" * 1000],
            "raw": b"\x00" * 1000,
            "count": 10**30,
            "ok": True,
            "none": None,
            "short": "s",
        },
    )
    assert len(line["peer"]) <= MAX_LOG_STRING + 20
    assert line["peer"].startswith("h" * MAX_LOG_STRING) and line["peer"].endswith("more]")
    assert isinstance(line["items"], str) and len(line["items"]) <= MAX_LOG_STRING + 20
    assert isinstance(line["raw"], str) and len(line["raw"]) <= MAX_LOG_STRING + 20
    assert line["count"] == 10**30 and line["ok"] is True and line["none"] is None
    assert line["short"] == "s"


@pytest.mark.parametrize("as_json", [True, False])
def test_a_rendered_line_is_bounded(
    as_json: bool, capsys: pytest.CaptureFixture[str], reset_logging: None
) -> None:
    configure_logging(json=as_json)
    log = structlog.get_logger("test")
    log.info("request.rejected", peer="h" * 60_000, error="e" * 60_000, session="s" * 60_000)
    try:
        raise ValueError("v" * 60_000)
    except ValueError:
        log.error("boom", exc_info=True)
    lines = capsys.readouterr().err
    assert len(lines) < 3 * MAX_LOG_STRING + MAX_LOG_EXCEPTION + 2_000
    if as_json:
        first, second = (json.loads(line) for line in lines.splitlines())
        assert first["peer"].startswith("h" * MAX_LOG_STRING)
        assert "ValueError" in second["exception"]


@pytest.mark.parametrize("as_json", [True, False])
def test_result_codes_are_numbers_with_their_names(
    as_json: bool, capsys: pytest.CaptureFixture[str], reset_logging: None
) -> None:
    """Issue 12: a Result-Code was logged as an enum's repr (`<ResultCode.TOO_BUSY: 3004>`)
    by the console renderer; it is the number, followed by its name."""
    configure_logging(json=as_json)
    log = structlog.get_logger("test")
    log.info("request.rejected", result_code=ResultCode.TOO_BUSY)
    log.info("request.answered", result_code=5012)
    log.info("x", result_code=4242, other_result_code=2001)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and "<ResultCode" not in "".join(lines)
    if as_json:
        first, second, third = (json.loads(line) for line in lines)
        assert first["result_code"] == 3004 and first["result_name"] == "DIAMETER_TOO_BUSY"
        assert type(first["result_code"]) is int
        assert (second["result_code"], second["result_name"]) == (
            5012,
            "DIAMETER_UNABLE_TO_COMPLY",
        )
        assert third["result_name"] == "unknown"
        assert third["other_result_name"] == "DIAMETER_SUCCESS"
    else:
        assert "result_code=3004 result_name=DIAMETER_TOO_BUSY" in lines[0]
        assert "result_code=5012 result_name=DIAMETER_UNABLE_TO_COMPLY" in lines[1]
