"""History of an account's movements (docs/protocol.md, *Extension: history*;
ocs/core/history.py): every movement of money recorded once, charges under the number of their
CDR, pages newest first, the bound per account, snapshots and replay; end to end over
127.0.0.1 with `ocs account history` and across a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.cli.main import main
from ocs.core.charging import Settings, settings_input
from ocs.core.history import History
from ocs.edge.client import Client
from protocol.codes import AccountOperation, MovementKind, RequestedAction
from protocol.messages import AMA, AMR, Movement
from tests.charging.conftest import (
    EUR,
    EVENT,
    INITIAL,
    PEAK,
    SMS,
    SUB,
    TERMINATION,
    Harness,
    MiB,
    amr,
    ccr,
    mscc,
    rsu,
    usu,
)
from tests.charging.peer import UPF, Peer
from tests.charging.test_server_e2e import running

CREATE = AccountOperation.CREATE
CREDIT = AccountOperation.CREDIT
DEBIT = AccountOperation.DEBIT
HISTORY = AccountOperation.HISTORY


def history(limit: int | None = None, before: int | None = None, account: str = "a") -> AMR:
    return msgspec.structs.replace(
        amr(HISTORY, account), history_limit=limit, history_before=before
    )


def moves(answer: AMA) -> list[tuple[int, MovementKind, int, int | None, int | None]]:
    """(number, kind, amount, rating group, CDR number) of each movement, as answered."""
    assert answer.result_code == 2001, answer
    return [
        (m.movement_sequence, m.movement_kind, m.amount, m.rating_group, m.movement_record)
        for m in answer.movement or ()
    ]


def _charge_some(h: Harness) -> None:
    """Every kind of money movement the core makes today, on account "a"."""
    h.account("a", SUB, 10 * EUR)  # 1: opening balance +10.00
    assert h.ama(amr(CREDIT, "a", amount=5 * EUR, operation_id="t1"), PEAK + 1).result_code == 2001
    # the retry of an operation applied is answered again but moves nothing: no movement
    assert h.ama(amr(CREDIT, "a", amount=5 * EUR, operation_id="t1"), PEAK + 2).result_code == 2001
    assert h.ama(amr(DEBIT, "a", amount=EUR), PEAK + 3).result_code == 2001  # 3: -1.00
    # a data session: 5 MiB at the peak price 0.02 EUR/MiB = 0.10 EUR, one CDR at TERMINATION
    start = ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB)
    assert h.cca(start, PEAK + 10).result_code == 2001
    end = ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=5 * MiB),)))
    assert h.cca(end, PEAK + 20).result_code == 2001
    # an SMS event: 2 messages at 0.10 EUR = 0.20 EUR debited; then one refunded, +0.10 EUR
    debit = ccr(
        "e1", EVENT, 0, mscc(30, ask=rsu(units=2)), service=SMS, subscriber=SUB,
        action=RequestedAction.DIRECT_DEBITING,
    )  # fmt: skip
    assert h.cca(debit, PEAK + 30).result_code == 2001
    refund = ccr(
        "e2", EVENT, 0, mscc(30, ask=rsu(units=1)), service=SMS, subscriber=SUB,
        action=RequestedAction.REFUND_ACCOUNT,
    )  # fmt: skip
    assert h.cca(refund, PEAK + 40).result_code == 2001


def test_every_movement_once_newest_first_with_cdr_numbers(h: Harness) -> None:
    _charge_some(h)
    cdrs = {r["recordSequenceNumber"]: r for r in h.cdrs()}
    session_cdr, event_cdr, refund_cdr = sorted(cdrs)
    answer = h.ama(history(), PEAK + 50)
    assert answer.movement_count == 6
    assert moves(answer) == [
        (6, MovementKind.REFUND, 100_000, 30, refund_cdr),  # +1 SMS x 0.10
        (5, MovementKind.CHARGE, -200_000, 30, event_cdr),  # -2 SMS x 0.10
        (4, MovementKind.CHARGE, -100_000, 10, session_cdr),  # -5 MiB x 0.02
        (3, MovementKind.DEBIT, -EUR, None, None),
        (2, MovementKind.CREDIT, 5 * EUR, None, None),
        (1, MovementKind.OPENING, 10 * EUR, None, None),
    ]
    # each charge is its CDR's: same account, same money (a refund's record is negative)
    assert cdrs[session_cdr]["charge"] == 100_000 and cdrs[refund_cdr]["charge"] == -100_000
    movements = answer.movement or ()
    assert [m.movement_units for m in movements[:3]] == [1, 2, 5 * MiB]
    assert movements[4].operation_id == "t1"
    # the movements add up to the balance: 10 + 5 - 1 - 0.10 - 0.20 + 0.10 = 13.80 EUR
    assert sum(m.amount for m in movements) == h.balance("a") == 13_800_000


def test_pages_by_limit_and_before(h: Harness) -> None:
    _charge_some(h)
    first = h.ama(history(limit=2), PEAK + 50)
    assert [m[0] for m in moves(first)] == [6, 5]
    second = h.ama(history(limit=2, before=5), PEAK + 51)
    assert [m[0] for m in moves(second)] == [4, 3]
    last = h.ama(history(limit=100, before=3), PEAK + 52)
    assert [m[0] for m in moves(last)] == [2, 1] and last.movement_count == 6
    assert moves(h.ama(history(before=1), PEAK + 53)) == []


def test_the_bound_per_account_keeps_the_last_and_counts_all(h: Harness) -> None:
    record = settings_input(PEAK - 1, Settings(history_limit=3))  # journaled, as the app does
    h.inputs.append(record)
    h.core.apply(record)
    h.account("a", SUB, 10 * EUR)
    for i in range(4):
        assert h.ama(amr(CREDIT, "a", amount=(i + 1) * EUR), PEAK + i).result_code == 2001
    answer = h.ama(history(), PEAK + 10)
    # five movements (opening + 4 credits), the last three kept: 3, 4, 5
    assert answer.movement_count == 5
    assert [(m[0], m[2]) for m in moves(answer)] == [(5, 4 * EUR), (4, 3 * EUR), (3, 2 * EUR)]


def test_an_account_that_never_moved_and_an_unknown_one(h: Harness) -> None:
    h.account("a", SUB, 0)  # an opening balance of 0 moves nothing
    empty = h.ama(history(), PEAK)
    assert empty.result_code == 2001 and empty.movement_count == 0 and empty.movement == ()
    unknown = h.ama(history(account="nobody"), PEAK)
    assert unknown.result_code == 5030 and unknown.failed_avp == {"Account-Id": "nobody"}
    assert unknown.movement is None and unknown.movement_count is None


def test_close_drops_the_history_and_a_new_account_starts_again(h: Harness) -> None:
    h.account("a", SUB, EUR)
    assert h.ama(amr(DEBIT, "a", amount=EUR), PEAK + 1).result_code == 2001
    assert h.ama(amr(AccountOperation.CLOSE, "a"), PEAK + 2).result_code == 2001
    assert len(h.core.history) == 0
    h.account("a", SUB, 2 * EUR, now_ms=PEAK + 3)
    assert moves(h.ama(history(), PEAK + 4)) == [(1, MovementKind.OPENING, 2 * EUR, None, None)]


def test_movements_survive_a_snapshot(h: Harness) -> None:
    _charge_some(h)
    before = h.ama(history(), PEAK + 50)
    h.restart()
    after = h.ama(history(), PEAK + 51)
    assert after.movement == before.movement and after.movement_count == 6


def test_history_packs_small() -> None:
    """The bound documented in the module: ~20-40 bytes a movement, packed."""
    kept = History(limit=16)
    for i in range(100):
        kept.record("acct-0000001", PEAK + i, MovementKind.CHARGE, -12_345, units=MiB,
                    rating_group=10, cdr_seq=1_000_000 + i)  # fmt: skip
    packed = kept.state()["acct-0000001"]
    assert len(packed) <= 16 * 40
    count, page = kept.page("acct-0000001", limit=100)
    assert count == 100 and [m.seq for m in page] == list(range(100, 84, -1))


async def test_history_end_to_end_across_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over 127.0.0.1: a top-up and a session, `ocs account history` (human and --json), and
    after a restart (snapshot at stop, or replay) the same movements."""
    data = tmp_path / "data"

    async def ask(client: Client, message: AMR) -> AMA:
        answer = await client.request(msgspec.structs.replace(message, origin_host=UPF))
        assert isinstance(answer, AMA), answer
        return answer

    async with running(data) as app:
        client = await Peer().connect(app.server.port)
        try:
            create = amr(CREATE, "a", amount=10 * EUR, subscriber=SUB)
            assert (await ask(client, create)).result_code == 2001
            top_up = amr(CREDIT, "a", amount=2 * EUR, operation_id="top-1")
            assert (await ask(client, top_up)).result_code == 2001
            first = await ask(client, history())
            assert moves(first) == [
                (2, MovementKind.CREDIT, 2 * EUR, None, None),
                (1, MovementKind.OPENING, 10 * EUR, None, None),
            ]
            capsys.readouterr()
            argv = ["account", "history", "a", "--server", f"127.0.0.1:{app.server.port}",
                    "--origin-host", "admin.test.local"]  # fmt: skip
            assert await asyncio.to_thread(main, argv) == 0
            # (the in-process server logs to the same stdout: the CLI's lines are picked out)
            out = capsys.readouterr().out
            assert "\nhistory a: 2 movements, 2 shown (newest first)\n" in f"\n{out}"
            assert "#2" in out and "credit" in out and "+2.00" in out and "top-1" in out
            assert await asyncio.to_thread(main, [*argv, "--json", "--limit", "1"]) == 0
            (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
            obj = json.loads(line)
            assert obj["Movement-Count"] == 2
            assert obj["Movement"] == [
                {"Movement-Sequence": 2, "Event-Timestamp": obj["Movement"][0]["Event-Timestamp"],
                 "Movement-Kind": 4, "Amount": 2 * EUR, "Operation-Id": "top-1"}
            ]  # fmt: skip
        finally:
            await client.close()
    async with running(data) as app:
        client = await Peer().connect(app.server.port)
        try:
            again = await ask(client, history())
            assert again.movement == first.movement and again.movement_count == 2
        finally:
            await client.close()


def test_the_wire_movement_type_round_trips() -> None:
    """A Movement goes through both encodings (dictionary codes 50-57)."""
    from protocol.avp import decode_avps, encode_avps
    from protocol.codec import decode_body, encode_body
    from protocol.codes import CommandCode

    answer = AMA(
        result_code=2001, origin_host="o", origin_realm="r", movement_count=7,
        movement=(Movement(movement_sequence=7, event_timestamp=1_700_000_000,
                           movement_kind=MovementKind.CHARGE, amount=-5, movement_units=9,
                           rating_group=10, movement_record=3, operation_id="x"),),
    )  # fmt: skip
    assert decode_body(CommandCode.ACCOUNT_MANAGEMENT, False, encode_body(answer)) == answer
    assert decode_avps(CommandCode.ACCOUNT_MANAGEMENT, False, encode_avps(answer)) == answer
    request = history(limit=5, before=9)
    assert decode_avps(CommandCode.ACCOUNT_MANAGEMENT, True, encode_avps(request)) == request


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 8),
    amounts=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(-(10**15), 10**15))),
    page=st.integers(1, 10),
    before=st.none() | st.integers(1, 40),
)
def test_history_keeps_the_last_of_each_account_in_order(
    limit: int, amounts: list[tuple[str, int]], page: int, before: int | None
) -> None:
    kept = History(limit)
    made: dict[str, list[int]] = {"a": [], "b": []}
    for i, (account, amount) in enumerate(amounts):
        seq = kept.record(account, PEAK + i, MovementKind.CREDIT, amount)
        made[account].append(amount)
        assert seq == len(made[account])
    for account, history in made.items():
        count, found = kept.page(account, limit=page, before=before)
        assert count == len(history)
        numbered = list(enumerate(history, start=1))[-limit:]  # the last `limit`, kept
        expected = [(n, a) for n, a in reversed(numbered) if before is None or n < before][:page]
        assert [(m.seq, m.amount) for m in found] == expected


def test_loans_repayments_and_offer_fees_are_movements(h: Harness) -> None:
    """The movements recorded by the features beside the charging path: a loan's principal
    credited (LOAN), a top-up's repayment (REPAYMENT), an offer's fee (FEE), each under the
    number of its record in the CDR stream."""
    h.account("a", SUB, 200_000)  # 0.20 EUR: at or below the demo loan threshold (0.50)
    loan = amr(AccountOperation.LOAN, "a", amount=2 * EUR, operation_id="l1")
    assert h.ama(loan, PEAK).result_code == 2001
    # 10.00 EUR top-up: repays 2.00 principal + 0.20 fee (10 % rounded up) first
    assert h.ama(amr(CREDIT, "a", amount=10 * EUR, operation_id="t1"), PEAK + 1).result_code == 2001
    # the demo bundle: 15.00 EUR a month, taken from the money (0.20 + 2.00 + 10.00 - 2.20)
    bundle = msgspec.structs.replace(
        amr(AccountOperation.SUBSCRIBE, "a", operation_id="s1"), offer_name="bundle-15"
    )
    assert h.ama(bundle, PEAK + 2).result_code != 2001  # 10.00 EUR does not pay 15.00
    assert h.ama(amr(CREDIT, "a", amount=10 * EUR, operation_id="t2"), PEAK + 3).result_code == 2001
    bundle = msgspec.structs.replace(bundle, operation_id="s2")
    assert h.ama(bundle, PEAK + 4).result_code == 2001
    got = moves(h.ama(history(), PEAK + 5))
    records = {r["recordSequenceNumber"]: r["recordType"] for r in h.cdrs()}
    assert sorted((kind, amount) for _, kind, amount, _, _ in got) == sorted(
        [
            (MovementKind.OPENING, 200_000),
            (MovementKind.LOAN, 2 * EUR),
            (MovementKind.CREDIT, 10 * EUR),
            (MovementKind.REPAYMENT, -2_200_000),
            (MovementKind.CREDIT, 10 * EUR),
            (MovementKind.FEE, -15 * EUR),
        ]
    )
    by_kind = {kind: record for _, kind, _, _, record in got}
    assert records[by_kind[MovementKind.LOAN]] == "loan"
    assert records[by_kind[MovementKind.REPAYMENT]] == "loanRepayment"
    assert records[by_kind[MovementKind.FEE]] == "offerFee"
