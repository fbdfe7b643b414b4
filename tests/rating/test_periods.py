"""rating.periods: boundaries of monthly (on the subscription day), weekly, daily and once."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from rating.periods import PeriodKind, boundary, next_boundary, period_bounds, period_index

PARIS = "Europe/Paris"


def ms(text: str, tz: str = PARIS) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()) * 1000


def test_monthly_renews_at_local_midnight_of_the_subscription_day() -> None:
    anchor = ms("2026-01-10T15:30:00")
    assert boundary(PeriodKind.MONTHLY, anchor, 1, PARIS) == ms("2026-02-10T00:00:00")
    assert boundary(PeriodKind.MONTHLY, anchor, 12, PARIS) == ms("2027-01-10T00:00:00")
    # Summer time: the boundary is local midnight (22:00 UTC the day before), not 23:00 UTC.
    assert boundary(PeriodKind.MONTHLY, anchor, 6, PARIS) == ms("2026-07-09T22:00:00", "UTC")


def local_day(kind: PeriodKind, anchor: int, index: int) -> str:
    at = boundary(kind, anchor, index, PARIS)
    assert at is not None
    return datetime.fromtimestamp(at // 1000, tz=UTC).astimezone(ZoneInfo(PARIS)).date().isoformat()


def test_a_missing_day_falls_on_the_last_day_of_the_month_and_comes_back() -> None:
    anchor = ms("2026-01-31T09:00:00")
    days = [local_day(PeriodKind.MONTHLY, anchor, k) for k in (1, 2, 3)]
    assert days == ["2026-02-28", "2026-03-31", "2026-04-30"]
    assert boundary(PeriodKind.MONTHLY, ms("2027-12-29T01:00:00"), 2, PARIS) == ms(
        "2028-02-29T00:00:00"
    )


def test_weekly_daily_and_once() -> None:
    anchor = ms("2026-03-25T23:59:00")  # a Wednesday; summer time starts Sunday 29th
    assert boundary(PeriodKind.DAILY, anchor, 1, PARIS) == ms("2026-03-26T00:00:00")
    assert boundary(PeriodKind.WEEKLY, anchor, 1, PARIS) == ms("2026-04-01T00:00:00")
    assert boundary(PeriodKind.ONCE, anchor, 1, PARIS) is None
    assert next_boundary(PeriodKind.ONCE, anchor, anchor + 10**12, PARIS) is None
    assert period_bounds(PeriodKind.ONCE, anchor, anchor + 5, PARIS) == (anchor, None)


def test_the_first_period_starts_at_the_anchor() -> None:
    anchor = ms("2026-01-10T15:30:00")
    end = ms("2026-02-10T00:00:00")
    assert period_bounds(PeriodKind.MONTHLY, anchor, anchor, PARIS) == (anchor, end)
    assert period_bounds(PeriodKind.MONTHLY, anchor, end - 1, PARIS) == (anchor, end)
    assert period_bounds(PeriodKind.MONTHLY, anchor, end, PARIS) == (
        end,
        ms("2026-03-10T00:00:00"),
    )
    assert period_index(PeriodKind.MONTHLY, anchor, anchor - 1, PARIS) == 0


KINDS = st.sampled_from([PeriodKind.MONTHLY, PeriodKind.WEEKLY, PeriodKind.DAILY])
INSTANTS = st.integers(min_value=ms("2000-01-01T00:00:00"), max_value=ms("2090-01-01T00:00:00"))
ZONES = st.sampled_from(["UTC", PARIS, "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])


@given(KINDS, INSTANTS, st.integers(min_value=0, max_value=10**11), ZONES)
def test_bounds_hold_the_instant_and_follow_each_other(
    kind: PeriodKind, anchor: int, offset: int, tz: str
) -> None:
    at = anchor + offset
    start, end = period_bounds(kind, anchor, at, tz)
    assert end is not None
    assert start <= at < end
    index = period_index(kind, anchor, at, tz)
    assert end == boundary(kind, anchor, index + 1, tz)
    assert next_boundary(kind, anchor, at, tz) == end
    # The period that follows starts where this one ends.
    assert period_bounds(kind, anchor, end, tz)[0] == end
