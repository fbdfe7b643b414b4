"""docs/catalog.md is the contract: its worked prices are what the CLI prints, and its example
catalog is valid."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest

from ocs.cli import catalog as catalog_cli
from rating import parse_catalog, price_at
from tests.rating.util import MiB, ts

DOC = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"
TEXT = DOC.read_text()
ROWS = re.findall(r"\| `([^`]*--rating-group[^`]*)` \|[^|\n]*\| (\d+) \|", TEXT)


def test_the_doc_has_its_worked_prices() -> None:
    assert len(ROWS) >= 15


@pytest.mark.parametrize(("command", "charge"), ROWS)
def test_cli_prices_the_demo_as_documented(
    command: str, charge: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="ocs")
    catalog_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["catalog", "price", *shlex.split(command), "--json"])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["charge"] == int(charge)
    assert sum(part["charge"] for part in result["breakdown"]) == int(charge)


def test_example_catalog_is_valid_and_priced_as_documented() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", TEXT, re.S)
    # the one ```toml block is the tested example; other snippets are fenced with plain ```
    assert len(blocks) == 1, "docs/catalog.md: fence snippets other than the example with ```"
    catalog = parse_catalog(blocks[0])
    internet, calls = catalog.rating_groups[1], catalog.rating_groups[3]
    evening = ts("2026-01-05T19:00:00+01:00")
    assert price_at(internet, 5 * MiB, evening).total == 40_000
    assert price_at(internet, MiB, evening).total == 8_047
    assert price_at(calls, 31, ts("2026-01-05T03:00:00+01:00")).total == 36_000
    assert calls.setup_fee == 100_000
    assert catalog.is_zero_rated(2)
