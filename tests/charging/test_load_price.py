"""Load-modulated prices (issue 15 item 4; docs/charging.md "Load-modulated prices",
docs/catalog.md "Load bands"): bands with exact factors and hysteresis, decided when a grant is
made and kept by it, measured on the core's state only, so replay gives the same prices. In the
core, with hand-computed prices (every figure commented)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from ocs.cli.catalog import catalog_changes, catalog_facts
from ocs.cli.main import main as ocs_main
from ocs.core.charging_types import STATE_DECODER, STATE_ENCODER, CoreState
from protocol.codes import CheckBalanceResult, Estimate, RequestedAction
from protocol.messages import CCA
from rating import CatalogError, parse_catalog
from rating.load import LoadBand, next_band
from rating.money import parse_ratio
from tests.charging.conftest import (
    EUR,
    INITIAL,
    PEAK,
    TERMINATION,
    UPDATE,
    WINDOW,
    Harness,
    MiB,
    ccr,
    mscc,
    only,
    rsu,
    sid,
    usu,
)
from tests.charging.test_events import event
from tests.charging.test_offers import subscribe

SUB = "491700000001"
MIN = 60_000

# RG 10: 0.01 EUR per MiB (10,000 micro-units per 1,048,576 octets), grants of 10 MiB.
# Bands on the open sessions: "busy" (x 3/2) entered at 3 sessions, left below 2.
LOAD = """
version = 1
name = "load-test"
timezone = "UTC"

[currency]
code = 978

[[services]]
context_id = "32251@3gpp.org"
rating_groups = [10, 11]

[[rating_groups]]
id = 10
unit = "octets"
price = "0.01"
block = "1 MiB"
[rating_groups.grant]
quantum = "10 MiB"
validity_time = "1 h"

[[rating_groups]]
id = 11
unit = "octets"
price = "0.01"
block = "1 MiB"
[rating_groups.grant]
quantum = "10 MiB"
validity_time = "1 h"

[load]
measure = "sessions"
rating_groups = [10]
base = "normal"

[[load.bands]]
name = "busy"
enter = 3
leave = 2
factor = "3/2"
"""

# The same RG 10 on the "grants" measure: grants of RG 10 in the last 60 s of input time.
# "busy" (x 2) from 2 grants in the window, left below 1; "peak" (x 3) from 4, left below 3.
GRANTS = LOAD.replace(
    """measure = "sessions"
rating_groups = [10]""",
    """measure = "grants"
window = "1 min"
rating_groups = [10]""",
).replace(
    """enter = 3
leave = 2
factor = "3/2"
""",
    """enter = 2
leave = 1
factor = "2"

[[load.bands]]
name = "peak"
enter = 4
leave = 3
factor = "3"
""",
)

NORMAL_MIB = 10_000  # 0.01 EUR per MiB
BUSY_MIB = 15_000  # x 3/2


@pytest.fixture
def lh() -> Harness:
    harness = Harness(catalog=LOAD)
    harness.account("a", SUB, 10 * EUR)
    return harness


def _open(h: Harness, name: str, at: int, rg: int = 10) -> CCA:
    return h.cca(ccr(name, INITIAL, 0, mscc(rg, ask=rsu()), subscriber=SUB), at)


def _used(h: Harness, name: str, number: int, mib: int, at: int, *, again: bool) -> CCA:
    kind = UPDATE if again else TERMINATION
    m = mscc(10, ask=rsu() if again else None, used=(usu(octets=mib * MiB),))
    return h.cca(ccr(name, kind, number, m), at)


def _enquiry(h: Harness, at: int, mib: int = 1) -> CCA:
    return h.cca(
        event(f"pe{at}", RequestedAction.PRICE_ENQUIRY, octets=mib * MiB, rg=10, service=DATA_CTX),
        at,
    )


DATA_CTX = "32251@3gpp.org"


def _cost(answer: CCA) -> int:
    cost = answer.cost_information
    assert cost is not None
    return int(cost.unit_value.value_digits * 10 ** (6 + (cost.unit_value.exponent or 0)))


def test_two_bands_and_a_hysteresis_crossing(lh: Harness) -> None:
    h = lh
    # s1 (1 open session), s2 (2): normal. Each grant of 10 MiB reserves 10 x 10,000.
    g1 = only(_open(h, "s1", PEAK))
    assert (g1.load_band, g1.load_factor) == ("normal", "1")
    assert only(_open(h, "s2", PEAK + 1)).load_band == "normal"
    assert h.reserved("a") == 2 * 100_000
    # s3: 3 open sessions reach "busy" (enter 3): 10 MiB x 15,000 = 150,000 reserved
    g3 = only(_open(h, "s3", PEAK + 2))
    assert (g3.load_band, g3.load_factor) == ("busy", "3/2")
    assert h.reserved("a") == 2 * 100_000 + 150_000
    # a price enquiry quotes the band now, and moves nothing: 1 MiB x 15,000
    quote = _enquiry(h, PEAK + 3)
    assert _cost(quote) == BUSY_MIB and only(quote).load_band == "busy"
    # s1 ends with 4 MiB: its grant was "normal", it stays so: 4 x 10,000 = 40,000
    _used(h, "s1", 1, 4, PEAK + MIN, again=False)
    # s2 reports 2 MiB on its normal grant (20,000) and asks again: 2 sessions open, below
    # "busy"'s enter (3) but not below its leave (2): the new grant is "busy" (hysteresis)
    g2 = only(_used(h, "s2", 1, 2, PEAK + 2 * MIN, again=True))
    assert (g2.load_band, g2.granted_service_unit and g2.granted_service_unit.cc_total_octets) == (
        "busy",
        10 * MiB,
    )
    # s3 ends with 6 MiB on its busy grant: 6 x 15,000 = 90,000
    _used(h, "s3", 1, 6, PEAK + 3 * MIN, again=False)
    # s2 reports 2 MiB on its busy grant, after its first 2 MiB (cumulative per session):
    # ceil(4 MiB x 15,000/MiB) - ceil(2 MiB x 15,000/MiB) = 60,000 - 30,000 = 30,000;
    # 1 open session is below "busy"'s leave (2): the new grant is "normal"
    assert only(_used(h, "s2", 2, 2, PEAK + 4 * MIN, again=True)).load_band == "normal"
    assert _cost(_enquiry(h, PEAK + 4 * MIN + 1)) == NORMAL_MIB
    # s2 ends with 1 MiB on its normal grant: ceil(5 MiB x 10,000) - ceil(4 MiB x 10,000)
    _used(h, "s2", 3, 1, PEAK + 5 * MIN, again=False)
    charges = {r["sessionId"]: r["charge"] for r in h.cdrs()}
    assert charges == {
        sid("s1"): 40_000,
        sid("s3"): 90_000,
        sid("s2"): 20_000 + 30_000 + 10_000,
    }
    assert h.balance("a") == 10 * EUR - 190_000 and h.reserved("a") == 0
    # the CDR containers say which band each report was charged in
    s2 = next(r for r in h.cdrs() if r["sessionId"] == sid("s2"))
    containers = s2["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    assert [(c["loadBand"], c["loadFactor"], c["charge"]) for c in containers] == [
        ("normal", "1", 20_000),
        ("busy", "3/2", 30_000),
        ("normal", "1", 10_000),
    ]
    h.ledger.check_invariants()
    h.assert_replays()


def test_a_group_outside_the_load_section_ignores_load(lh: Harness) -> None:
    h = lh
    for n in range(3):
        _open(h, f"s{n}", PEAK + n)
    # RG 11 is not in `rating_groups`: base price, and no Load-Band in its answer
    g = only(_open(h, "other", PEAK + 10, rg=11))
    assert g.load_band is None and g.load_factor is None
    # s0, s1 normal, s2 busy, and RG 11 at its base price: 100,000 + 100,000 + 150,000 + 100,000
    assert h.reserved("a") == 2 * 100_000 + 150_000 + 100_000
    h.assert_replays()


def test_an_estimate_is_quoted_as_the_real_request_and_moves_no_band(lh: Harness) -> None:
    h = lh
    _open(h, "s1", PEAK)
    _open(h, "s2", PEAK + 1)
    # an estimate INITIAL is quoted as a real third session would be: "busy" (3 sessions,
    # itself included); 10 MiB x 15,000 would be reserved, nothing is
    est = replace(ccr("e", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), estimate=Estimate(1))
    assert only(h.cca(est, PEAK + 2)).load_band == "busy"
    assert h.reserved("a") == 2 * 100_000
    # but it moved nothing: the band in force is the base one, and the estimate session does
    # not count for others (2 real sessions open + the next one = 3: busy, entered now)
    assert h.core.load_pricing.band == 0
    assert only(_open(h, "s3", PEAK + 3)).load_band == "busy"
    assert h.core.load_pricing.band == 1
    h.assert_replays()


def test_usage_keeps_the_band_of_its_grant_after_the_band_fell(lh: Harness) -> None:
    h = lh
    for n in range(3):
        _open(h, f"s{n}", PEAK + n)  # s2's grant is busy
    _used(h, "s0", 1, 1, PEAK + MIN, again=False)
    _used(h, "s1", 1, 1, PEAK + MIN + 1, again=False)
    # one session open, below busy's leave (2): a grant now would be "normal", and an
    # enquiry quotes that (1 MiB x 10,000)
    quote = _enquiry(h, PEAK + MIN + 2)
    assert (only(quote).load_band, _cost(quote)) == ("normal", NORMAL_MIB)
    # s2 still pays its grant's band: 2 MiB x 15,000 (no RAR was sent for the band change)
    assert h.take_actions() == []
    _used(h, "s2", 1, 2, PEAK + 2 * MIN, again=False)
    assert h.cdrs()[-1]["charge"] == 2 * BUSY_MIB
    h.assert_replays()


def test_the_grants_measure_over_a_window_of_input_time() -> None:
    h = Harness(catalog=GRANTS)
    h.account("a", SUB, 10 * EUR)
    # grants of RG 10 in the 60 s before each decision (the decided one left out):
    # 0 -> normal, 1 -> normal (below enter 2), 2 -> busy (x2), 3 -> busy, 4 -> peak (x3)
    bands = [only(_open(h, f"s{n}", PEAK + n * 1000)).load_band for n in range(5)]
    assert bands == ["normal", "normal", "busy", "busy", "peak"]
    # reserved: 2 x 100,000 + 2 x 200,000 + 300,000
    assert h.reserved("a") == 900_000
    # 61 s after the last one, the window is empty: 0 < peak's leave 3, < busy's leave 1
    assert only(_open(h, "late", PEAK + 4000 + 61_000)).load_band == "normal"
    # 2 s later: 1 grant in the window, below busy's enter: normal
    assert only(_open(h, "later", PEAK + 4000 + 63_000)).load_band == "normal"
    h.ledger.check_invariants()
    h.assert_replays()


def test_a_direct_debit_is_priced_in_the_band_and_recorded_in_its_cdr(lh: Harness) -> None:
    h = lh
    for n in range(3):
        _open(h, f"s{n}", PEAK + n)
    debit = h.cca(
        event("d1", RequestedAction.DIRECT_DEBITING, octets=2 * MiB, rg=10, service=DATA_CTX),
        PEAK + 10,
    )
    assert debit.result_code == 2001 and only(debit).load_band == "busy"
    record = h.cdrs()[-1]
    # 2 MiB x 15,000
    assert record["charge"] == 30_000
    container = record["listOfMultipleUnitUsage"][0]["usedUnitContainers"][0]
    assert (container["loadBand"], container["loadFactor"]) == ("busy", "3/2")
    h.assert_replays()


def test_a_restart_from_a_snapshot_keeps_the_band_and_the_grants() -> None:
    h = Harness(catalog=LOAD)
    h.account("a", SUB, 10 * EUR)
    for n in range(3):
        _open(h, f"s{n}", PEAK + n)
    _used(h, "s0", 1, 1, PEAK + MIN, again=False)
    state = STATE_DECODER.decode(h.core.snapshot())
    assert state.load_pricing is not None and state.load_pricing.band == 1
    before = h.core.snapshot()
    h.restart()  # restores the DEMO-built core from the snapshot (its catalog is in it)
    assert h.core.snapshot() == before
    # 2 open: the band stays busy (hysteresis state restored), s2's grant stays busy
    assert only(_used(h, "s1", 1, 1, PEAK + 2 * MIN, again=True)).load_band == "busy"
    _used(h, "s2", 1, 2, PEAK + 3 * MIN, again=False)
    assert h.cdrs()[-1]["charge"] == 2 * BUSY_MIB


def test_a_snapshot_of_layout_4_loads_in_the_base_band() -> None:
    h = Harness(catalog=LOAD)
    state = STATE_DECODER.decode(h.core.snapshot())
    fields = [getattr(state, f) for f in CoreState.__struct_fields__]
    old = STATE_ENCODER.encode(fields[: CoreState.__struct_fields__.index("load_pricing")])
    h.core.restore(old)
    assert h.core.load_pricing.band == 0


def test_next_band_hysteresis_table() -> None:
    bands = (
        LoadBand(name="busy", enter=100, leave=80, factor=parse_ratio("1.5")),
        LoadBand(name="peak", enter=200, leave=160, factor=parse_ratio("2")),
    )
    cases = [
        (0, 99, 0),
        (0, 100, 1),
        (0, 250, 2),  # straight to peak
        (1, 80, 1),  # inside busy's hysteresis
        (1, 79, 0),
        (2, 170, 2),
        (2, 159, 1),
        (2, 10, 0),  # straight down
        (1, 199, 1),
        (1, 200, 2),
    ]
    assert [next_band(bands, cur, load) for cur, load, _ in cases] == [c[2] for c in cases]


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ('measure = "cpu"\n[[load.bands]]\nname="b"\nenter=1\nfactor="2"', "load.measure"),
        ('measure = "grants"\n[[load.bands]]\nname="b"\nenter=1\nfactor="2"', "load.window"),
        ('[[load.bands]]\nname="b"\nenter=1\nfactor=1.5', "load.bands[0].factor"),
        ('[[load.bands]]\nname="b"\nenter=1\nfactor="0"', "load.bands[0].factor"),
        ('[[load.bands]]\nname="b"\nenter=2\nleave=3\nfactor="2"', "load.bands[0].leave"),
        (
            '[[load.bands]]\nname="b"\nenter=2\nfactor="2"\n[[load.bands]]\nname="c"\nenter=2\n'
            'factor="3"',
            "load.bands[1].enter",
        ),
        (
            'rating_groups = [99]\n[[load.bands]]\nname="b"\nenter=1\nfactor="2"',
            "load.rating_groups[0]",
        ),
        ("", "load.bands"),
    ],
)
def test_bad_load_sections_are_refused_with_their_path(section: str, path: str) -> None:
    base = LOAD.split("[load]")[0]
    with pytest.raises(CatalogError) as err:
        parse_catalog(base + "[load]\n" + section + "\n")
    assert err.value.path == path


def test_a_catalog_change_caps_open_grants_at_its_largest_factor(lh: Harness) -> None:
    h = lh
    for n in range(3):
        _open(h, f"s{n}", PEAK + n)  # s2's grant: busy, x 3/2
    # the operator lowers busy to x 5/4: s2's grant keeps its band, at most the new factor
    h.load_catalog(LOAD.replace('factor = "3/2"', 'factor = "5/4"'), PEAK + 10)
    assert h.take_actions() == []  # no price change of a rating group: no RAR
    _used(h, "s2", 1, 2, PEAK + MIN, again=False)
    record = h.cdrs()[-1]
    # 2 MiB x 10,000 x 5/4 = 25,000
    assert record["charge"] == 25_000
    container = record["listOfMultipleUnitUsage"][0]["usedUnitContainers"][0]
    assert (container["loadBand"], container["loadFactor"]) == ("busy", "5/4")
    # without a [load] section, RG 10 ignores load: no band in answers, the base price, and an
    # open busy grant is charged at factor 1 at most
    h.load_catalog(LOAD.split("[load]")[0], PEAK + 2 * MIN)
    assert h.core.load_pricing.band == 0
    g = only(_open(h, "plain", PEAK + 2 * MIN + 1))
    assert g.load_band is None
    _used(h, "s1", 1, 1, PEAK + 3 * MIN, again=False)  # its grant was normal anyway
    assert h.cdrs()[-1]["charge"] == NORMAL_MIB
    h.ledger.check_invariants()
    h.assert_replays()


@pytest.mark.parametrize("seed", range(6))
def test_random_traffic_replays_to_the_same_prices_and_books(seed: int) -> None:
    """Sessions opened, reported, re-granted and closed at random, with enquiries and debits,
    on both measures: replaying the journal gives the same state, CDRs and balances, and the
    money identity holds."""
    rnd = random.Random(seed)
    h = Harness(catalog=GRANTS if seed % 2 else LOAD)
    h.account("a", SUB, 1000 * EUR)
    open_: dict[str, int] = {}  # session -> last CC-Request-Number
    now = PEAK
    opened = 0
    bands: set[str | None] = set()
    for _ in range(120):
        now += rnd.choice((1, 500, 5_000, 30_000))
        roll = rnd.random()
        if roll < 0.35 or not open_:
            name = f"s{opened}"
            opened += 1
            bands.add(only(_open(h, name, now)).load_band)
            open_[name] = 0
        elif roll < 0.75:
            name = rnd.choice(sorted(open_))
            again = rnd.random() < 0.6
            answer = _used(h, name, open_[name] + 1, rnd.randrange(0, 12), now, again=again)
            bands.add(only(answer).load_band)
            if again:
                open_[name] += 1
            else:
                del open_[name]
        elif roll < 0.85:
            bands.add(only(_enquiry(h, now, rnd.randrange(1, 5))).load_band)
        else:
            units = rnd.randrange(1, 5) * MiB
            debit = event(
                f"d{now}", RequestedAction.DIRECT_DEBITING, octets=units, rg=10, service=DATA_CTX
            )
            assert h.cca(debit, now).result_code == 2001
        h.tick(now)
    for name, number in sorted(open_.items()):
        _used(h, name, number + 1, 1, now + 1, again=False)
    assert "busy" in bands  # the traffic entered a band
    h.ledger.check_invariants()
    assert h.reserved("a") == 0
    assert h.balance("a") == 1000 * EUR - h.cdr_total("a")
    h.assert_replays()


def test_catalog_diff_lists_the_load_section() -> None:
    old = parse_catalog(LOAD)
    new = parse_catalog(LOAD.replace('factor = "3/2"', 'factor = "5/4"').replace("leave = 2", ""))
    assert list(catalog_changes(old, new)) == [
        ("load band busy", "enter at 3, leave below 2: x 3/2", "enter at 3, leave below 3: x 5/4")
    ]
    without = parse_catalog(LOAD.split("[load]")[0])
    assert ("load measure", "sessions", None) in list(catalog_changes(old, without))
    grants = catalog_facts(parse_catalog(GRANTS))
    assert grants["load measure"] == "grants in the last 60 s"
    assert grants["load rating groups"] == "10" and grants["load base band"] == "normal"


@st.composite
def _bands(draw: st.DrawFn) -> tuple[LoadBand, ...]:
    enters = sorted(set(draw(st.lists(st.integers(1, 500), min_size=1, max_size=5))))
    bands: list[LoadBand] = []
    for i, enter in enumerate(enters):
        low = bands[-1].leave if bands else 1
        leave = draw(st.integers(min(low, enter), enter))
        bands.append(LoadBand(name=f"b{i}", enter=enter, leave=leave, factor=parse_ratio("2")))
    return tuple(bands)


@given(bands=_bands(), current=st.integers(0, 5), load=st.integers(0, 600))
def test_next_band_is_stable_and_respects_enter_and_leave(
    bands: tuple[LoadBand, ...], current: int, load: int
) -> None:
    band = next_band(bands, current, load)
    assert 0 <= band <= len(bands)
    assert next_band(bands, band, load) == band  # the same load moves it no further
    if band > 0:
        assert load >= bands[band - 1].leave  # not below the leave of the band it is in
    if band < len(bands):
        assert load < bands[band].enter  # and not at the enter of the next one


def test_ocs_catalog_price_in_a_load_band(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/catalog.md "Load bands": 10 MiB of the demo's video (RG 20) at 0.005 EUR per MiB
    costs 50,000 in the base band, 62,500 busy (x 5/4) and 75,000 at peak (x 3/2)."""
    at = "2026-01-05T14:00:00+01:00"
    charges = {}
    for band in (None, "normal", "busy", "peak"):
        args = ["catalog", "price", "--rating-group", "20", "--octets", str(10 * MiB)]
        args += ["--at", at, "--json"] + (["--load-band", band] if band else [])
        assert ocs_main(args) == 0
        charges[band] = json.loads(capsys.readouterr().out)["charge"]
    assert charges == {None: 50_000, "normal": 50_000, "busy": 62_500, "peak": 75_000}
    rush = ["catalog", "price", "--rating-group", "20", "--octets", "1", "--load-band", "rush"]
    assert ocs_main(rush) == 1
    err = capsys.readouterr().err
    assert "unknown load band 'rush' (the catalog has: normal, busy, peak)" in err
    data = ["catalog", "price", "--rating-group", "10", "--octets", "1", "--load-band", "busy"]
    assert ocs_main(data) == 1
    assert "not priced by load" in capsys.readouterr().err


def test_a_packed_idle_session_keeps_its_grants_band(lh: Harness) -> None:
    h = lh
    for n in range(3):
        _open(h, f"s{n}", PEAK + n)  # s2's grant: busy
    # past the duplicate window, any request packs the idle sessions (docs/charging.md 4b)
    h.account("b", "491700000002", EUR, now_ms=PEAK + WINDOW + 10)
    assert h.core.sessions.packed() == 3
    # s0 and s1 end (1 session left: a grant now would be normal), then s2 reports on its
    # packed busy grant: 3 MiB x 15,000
    _used(h, "s0", 1, 1, PEAK + WINDOW + 20, again=False)
    _used(h, "s1", 1, 1, PEAK + WINDOW + 30, again=False)
    _used(h, "s2", 1, 3, PEAK + WINDOW + 40, again=False)
    assert h.cdrs()[-1]["charge"] == 3 * BUSY_MIB
    h.assert_replays()


def test_check_balance_and_refund_in_a_band(lh: Harness) -> None:
    h = lh
    for n in range(3):
        _open(h, f"s{n}", PEAK + n)  # busy: 3 open sessions
    # available: 10 EUR - 450,000 reserved. CHECK_BALANCE quotes the band: 2 MiB x 15,000
    check = h.cca(
        event("c1", RequestedAction.CHECK_BALANCE, octets=2 * MiB, rg=10, service=DATA_CTX),
        PEAK + 10,
    )
    assert check.check_balance_result == CheckBalanceResult.ENOUGH_CREDIT
    assert only(check).load_band == "busy"
    assert h.core.load_pricing.band == 1  # (already busy; a check moves nothing)
    # a busy debit of 2 MiB takes 30,000; its refund gives back exactly that, whatever the
    # band is by then (the refund answer names no band)
    debit = event("d1", RequestedAction.DIRECT_DEBITING, octets=2 * MiB, rg=10, service=DATA_CTX)
    assert h.cca(debit, PEAK + 20).result_code == 2001
    for n in range(3):
        _used(h, f"s{n}", 1, 0, PEAK + 30 + n, again=False)  # all closed: base next time
    before = h.balance("a")
    refund = event("r1", RequestedAction.REFUND_ACCOUNT, octets=2 * MiB, rg=10, service=DATA_CTX)
    answer = h.cca(refund, PEAK + 40)
    assert answer.result_code == 2001 and only(answer).load_band is None
    assert h.balance("a") - before == 30_000
    assert h.cdrs()[-1]["charge"] == -30_000
    h.assert_replays()


def test_a_grant_the_allowances_pay_whole_is_in_its_band_and_counted(h: Harness) -> None:
    """The demo catalog: RG 20 priced by its granted rate, and the offer bundle-15 whose data
    allowance pays RG 20. A grant its allowance pays whole reserves no money (no reservation
    id) but is a grant made: it carries its band and counts toward the "grants" measure."""
    h.account("a", SUB, 100 * EUR)
    assert subscribe(h, "bundle-15", PEAK).result_code == 2001
    g = only(_open(h, "v1", PEAK + 1, rg=20))
    assert g.result_code == 2001 and g.load_band == "normal"
    policy = h.core.catalog.load
    assert policy is not None
    assert h.core.load_pricing.measure(policy, 0, PEAK // 1000 + 2) == 1
