"""`ocs catalog check` and `ocs catalog price`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from ocs.cli import catalog as catalog_cli
from ocs.edge.catalog_files import demo_catalog_text

BROKEN = {
    "bad-toml": ("[currency\ncode = 978\n", "invalid TOML"),
    "unknown-unit": (
        demo_catalog_text().replace('unit = "units"', 'unit = "messages"'),
        "rating_groups[2].unit: unknown unit 'messages'",
    ),
    "negative-price": (
        demo_catalog_text().replace('price = "0.005"', 'price = "-0.005"'),
        "rating_groups[1].price: must not be negative",
    ),
    "float-price": (
        demo_catalog_text().replace('price = "0.10"', "price = 0.10"),
        "rating_groups[2].price: floats are not allowed",
    ),
    "overlapping-periods": (
        demo_catalog_text().replace(
            'factor = "0.5"                 # half price all weekend',
            'factor = "0.5"\n[[rating_groups.periods]]\ndays = ["sun"]\nstart = "10:00"\n'
            'end = "11:00"\nprice = "0.01"\n',
        ),
        "rating_groups[3].periods[1]: overlaps rating_groups[3].periods[0] on sun",
    ),
    "unknown-linked-group": (
        demo_catalog_text().replace("linked_rating_groups = [10]", "linked_rating_groups = [11]"),
        "rating_groups[1].linked_rating_groups[0]: unknown rating group 11",
    ),
}


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ocs")
    catalog_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def price_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert run(["catalog", "price", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result: dict[str, Any] = json.loads(out)
    return result


def test_check_accepts_the_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(demo_catalog_text())
    assert run(["catalog", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "5 rating groups" in out


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_refuses_broken_catalogs(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BROKEN[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    assert run(["catalog", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {path}: ")
    assert expected in captured.err


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["catalog", "check", str(tmp_path / "nope.toml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_price_json(capsys: pytest.CaptureFixture[str]) -> None:
    result = price_json(
        capsys, ["--rating-group", "40", "--seconds", "10", "--at", "2026-01-05T14:00:00+01:00"]
    )
    assert result["charge"] == 110_000
    assert result["usage_charge"] == 60_000
    assert result["setup_fee"] == 50_000
    assert result["currency"] == 978
    assert result["billed_units"] == 60
    assert result["start"] == 1_767_618_000
    assert [part["charge"] for part in result["breakdown"]] == [60_000, 50_000]
    assert [part["kind"] for part in result["breakdown"]] == ["usage", "setup_fee"]
    assert result["breakdown"][0]["rate"]["micro_per_unit"] == "1000"


def test_price_json_split(capsys: pytest.CaptureFixture[str]) -> None:
    result = price_json(
        capsys,
        [
            "--rating-group", "10", "--octets", "20971520",
            "--at", "2026-01-05T19:50", "--end", "2026-01-05T20:10",  # local (Paris) time
        ],
    )  # fmt: skip
    assert result["charge"] == 300_000
    parts = result["breakdown"]
    assert [(p["start_iso"], p["units"], p["charge"]) for p in parts] == [
        ("2026-01-05T18:50:00Z", 10_485_760, 200_000),
        ("2026-01-05T19:00:00Z", 10_485_760, 100_000),
    ]
    assert [p["rate"]["label"] for p in parts] == ["peak", "base"]
    assert parts[0]["rate"]["price_per_block"] == "20000"


def test_price_text(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "catalog",
        "price",
        "--rating-group",
        "10",
        "--octets",
        "10485760",
        "--at",
        "1767618000",
    ]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "peak: 0.02 EUR per 1048576 octets" in out
    assert out.rstrip().endswith("charge: 200000 micro-units (0.20 EUR)")


def test_price_now_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    result = price_json(capsys, ["--rating-group", "30", "--units", "2"])
    assert result["charge"] == 200_000


def test_price_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["catalog", "price", "--rating-group", "10", "--seconds", "5"]) == 1
    assert "counts octets; use --octets" in capsys.readouterr().err
    assert run(["catalog", "price", "--rating-group", "77", "--units", "5"]) == 1
    assert "unknown rating group 77" in capsys.readouterr().err
    assert run(["catalog", "price", "--rating-group", "30", "--units", "1", "--at", "soon"]) == 1
    assert "bad instant" in capsys.readouterr().err
    at = ["--at", "2026-01-05T14:00Z", "--end", "2026-01-05T13:00Z"]
    assert run(["catalog", "price", "--rating-group", "30", "--units", "1", *at]) == 1
    assert "before start" in capsys.readouterr().err
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN["unknown-unit"][0])
    argv = ["catalog", "price", "--catalog", str(path), "--rating-group", "30", "--units", "1"]
    assert run(argv) == 1
    assert "rating_groups[2].unit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        run(["catalog", "price", "--rating-group", "10"])  # no quantity
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        run(["catalog", "price", "--rating-group", "10", "--octets", "-5"])


def test_price_with_a_catalog_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(demo_catalog_text().replace('price = "0.10"', 'price = "0.15"'))
    result = price_json(capsys, ["--catalog", str(path), "--rating-group", "30", "--units", "2"])
    assert result["charge"] == 300_000


def test_registered_in_the_ocs_command() -> None:
    from ocs.cli import catalog
    from ocs.cli.main import SUBCOMMANDS

    assert catalog in SUBCOMMANDS
