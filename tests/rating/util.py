"""Helpers for the rating tests: instants from ISO text, one-group catalogs from dicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ocs.edge.catalog_files import load_catalog_file
from rating import Catalog, RatingGroup, parse_catalog

MiB = 1024 * 1024
KiB = 1024
GiB = 1024 * MiB

DEMO: Catalog = load_catalog_file(None)


def ts(text: str) -> int:
    """Epoch seconds of an ISO 8601 date-time with offset."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)


def one_group(rg: dict[str, Any], *, timezone: str = "UTC") -> RatingGroup:
    """A catalog with the single rating group ``rg`` (id 1 unless given), and that group."""
    table: dict[str, Any] = {"id": 1, "unit": "units", "grant": {"quantum": 1}}
    table.update(rg)
    catalog = parse_catalog(
        {
            "timezone": timezone,
            "currency": {"code": 978},
            "services": [{"context_id": "x@example", "rating_groups": [table["id"]]}],
            "rating_groups": [table],
        }
    )
    return catalog.rating_groups[table["id"]]
