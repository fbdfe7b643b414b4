"""CREATE_BULK (docs/protocol.md, *Extension: bulk create*; ocs/core/bulk.py): each account of
the batch created or refused as its CREATE would be, on its own; the answer lists the refused
ones; one journaled input that replays to the same accounts; the batch's bound; the audit line
of a batch over 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from ocs.core.ledger import Ledger
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codec import decode_body, encode_body
from protocol.codes import AccountOperation, CommandCode, MovementKind, SubscriptionIdType
from protocol.errors import ProtocolError
from protocol.limits import MAX_BULK_ACCOUNTS
from protocol.messages import AMA, AMR, BulkAccount, SubscriptionId
from tests.charging.conftest import EUR, PEAK, Harness, amr
from tests.charging.peer import UPF, Peer
from tests.charging.test_server_e2e import running

E164 = SubscriptionIdType.END_USER_E164


def entry(account_id: str, msisdn: str | None, amount: int = EUR) -> BulkAccount:
    subs = (
        None
        if msisdn is None
        else (SubscriptionId(subscription_id_type=E164, subscription_id_data=msisdn),)
    )
    return BulkAccount(account_id=account_id, subscription_id=subs, amount=amount)


def bulk(*entries: BulkAccount) -> AMR:
    return msgspec.structs.replace(
        amr(AccountOperation.CREATE_BULK, "-"), bulk_account=tuple(entries)
    )


def test_each_account_on_its_own_and_the_refused_listed(h: Harness) -> None:
    h.account("old", "491700000000", EUR)
    answer = h.ama(
        bulk(
            entry("b-1", "+491700000001"),
            entry("old", "491700000009"),  # exists: refused, the next ones created all the same
            entry("b-2", "12x"),  # not an E.164 number
            entry("b-3", "491700000000"),  # "old"'s number
            entry("b-4", None, 2 * EUR),
            entry("b-1", "491700000005"),  # twice in one batch: the second exists
        ),
        PEAK + 1,
    )
    assert answer.result_code == 2001 and answer.account is None
    assert [(r.account_id, r.result_code, r.error_message) for r in answer.bulk_result or ()] == [
        ("old", 5004, "an account with this Account-Id exists already"),
        ("b-2", 5004, "an E.164 Subscription-Id must be 1 to 15 digits (a leading + is removed)"),
        ("b-3", 5004, "the Subscription-Id belongs to another account"),
        ("b-1", 5004, "an account with this Account-Id exists already"),
    ]
    created = {v.account_id: v for v in h.ledger.accounts()}
    assert sorted(created) == ["b-1", "b-4", "old"]
    assert created["b-1"].subscriptions[0].data == "491700000001"  # normalised as at CREATE
    assert created["b-4"].balance == 2 * EUR and created["old"].balance == EUR
    # the opening balances are movements, as a CREATE's
    hist = h.ama(msgspec.structs.replace(amr(AccountOperation.HISTORY, "b-4")), PEAK + 2)
    assert [(m.movement_kind, m.amount) for m in hist.movement or ()] == [
        (MovementKind.OPENING, 2 * EUR)
    ]
    # (the fixture then replays the journaled inputs: the same accounts, byte for byte)


def test_a_bulk_without_accounts_is_refused(h: Harness) -> None:
    answer = h.ama(amr(AccountOperation.CREATE_BULK, "-"), PEAK)
    assert answer.result_code == 5005 and answer.failed_avp == {"Bulk-Account": None}
    assert h.ledger.account_count == 0


def test_the_batch_is_bounded() -> None:
    """More than MAX_BULK_ACCOUNTS (or none) is refused by the codec: 5004, nothing applied."""
    for count in (0, MAX_BULK_ACCOUNTS + 1):
        entries = tuple(entry(f"x{i}", None) for i in range(count))
        body = encode_body(bulk(*entries))
        with pytest.raises(ProtocolError) as refused:
            decode_body(CommandCode.ACCOUNT_MANAGEMENT, True, body)
        assert refused.value.result_code == 5004
    full = tuple(entry(f"x{i}", None) for i in range(MAX_BULK_ACCOUNTS))
    assert decode_body(CommandCode.ACCOUNT_MANAGEMENT, True, encode_body(bulk(*full)))


async def test_a_batch_over_127_0_0_1_is_one_audit_line(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with running(tmp_path / "data") as app:
            client = await Peer().connect(app.server.port)
            try:
                batch = msgspec.structs.replace(
                    bulk(entry("n-1", "4930001", 3 * EUR), entry("n-2", "4930001", EUR)),
                    origin_host=UPF,
                )
                answer = await client.request(batch)
                assert isinstance(answer, AMA) and answer.result_code == 2001
                assert [r.account_id for r in answer.bulk_result or ()] == ["n-2"]
                got = await client.request(
                    msgspec.structs.replace(amr(AccountOperation.GET, "n-1"), origin_host=UPF)
                )
                assert isinstance(got, AMA) and got.account and got.account.balance == 3 * EUR
            finally:
                await client.close()
    (line,) = [e for e in logs if e.get("operation") == "CREATE_BULK"]
    assert line["event"] == "admin.operation" and line["peer"] == UPF
    assert (line["accounts"], line["first_account"], line["last_account"]) == (2, "n-1", "n-2")
    assert line["amount"] == 4 * EUR and line["refused"] == 1 and line["result_code"] == 2001


def test_a_large_import_does_not_push_operation_ids_out_of_memory() -> None:
    """Regression: every CREATE was remembered under an operation id of its own in the ledger's
    bounded memory of Operation-Ids (`max_remembered`, 1,000,000 by default), though a CREATE
    is applied once by its Account-Id, never by that id: an import of a million accounts
    pushed out the Operation-Ids of the day's top-ups, and a retried top-up was credited
    twice."""
    h = Harness(ledger=Ledger(max_remembered=4))
    h.account("payer", "491700000000", EUR)
    top_up = amr(AccountOperation.CREDIT, "payer", amount=EUR, operation_id="top-1")
    assert h.ama(top_up, PEAK + 1).result_code == 2001
    # an import larger than the memory of Operation-Ids, in a batch and one by one
    assert h.ama(bulk(*(entry(f"i-{n}", None) for n in range(8))), PEAK + 2).result_code == 2001
    for n in range(8, 12):
        assert h.ama(amr(AccountOperation.CREATE, f"i-{n}"), PEAK + 3).result_code == 2001
    # the top-up retried (its answer no longer in the duplicate cache: a new End-to-End-Id)
    assert h.ama(top_up, PEAK + 4).result_code == 2001
    assert h.balance("payer") == 2 * EUR  # 1 + 1, credited once


def test_the_answer_of_a_full_batch_of_refusals_fits_a_message() -> None:
    """The bound of `MAX_BULK_ACCOUNTS`: 128 refusals with 128-character Account-Ids and the
    longest fixed Error-Message fit the default message length in both encodings."""
    from ocs.core.outcomes import OUTCOMES
    from protocol.avp import encode_avps
    from protocol.limits import MAX_ACCOUNT_ID_LENGTH
    from protocol.messages import BulkResult

    longest = max((w.error_message or "" for w in OUTCOMES.values()), key=len)
    answer = AMA(
        result_code=2001,
        origin_host="o" * 64,
        origin_realm="r" * 64,
        bulk_result=tuple(
            BulkResult(
                account_id=f"{n:03d}".ljust(MAX_ACCOUNT_ID_LENGTH, "x"),
                result_code=5004,
                error_message=longest,
            )
            for n in range(MAX_BULK_ACCOUNTS)
        ),
    )
    for body in (encode_body(answer), encode_avps(answer)):
        assert 20 + len(body) <= 65_536, len(body)


async def test_a_batch_counts_as_its_accounts_toward_a_checkpoint(tmp_path: Path) -> None:
    """A CREATE_BULK is one journal record but replays as its CREATEs: toward
    `checkpoint_records` it counts as many records as it has accounts, so the replay after a
    crash in a large import stays bounded (regression: 1,000,000 imported accounts were 7,813
    records, under the 100,000 that trigger a checkpoint, and a crash replayed them all)."""
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=tmp_path / "data", checkpoint_records=100),
    )
    try:
        await app.start()
        client = await Peer().connect(app.server.port)
        try:
            batch = bulk(*(entry(f"w-{n}", None) for n in range(MAX_BULK_ACCOUNTS)))
            answer = await client.request(msgspec.structs.replace(batch, origin_host=UPF))
            assert isinstance(answer, AMA) and answer.result_code == 2001
            journal = app.store.journal
            # two records (the catalog, the batch) but 128 accounts: a checkpoint is due
            for _ in range(200):  # the timer looks each second
                if journal.snapshot_lsn >= 2:
                    break
                await asyncio.sleep(0.05)
            assert journal.snapshot_lsn >= 2 and journal.last_lsn < 100
        finally:
            await client.close()
    finally:
        await app.stop()
        await app.close()


async def test_bulk_and_history_over_binary_avps(tmp_path: Path) -> None:
    """A standard Diameter peer (binary AVP bodies, version 0x01) sends CREATE_BULK and
    HISTORY and reads their answers: the AVPs of codes 50-59 on the wire."""
    from ocs.edge.client import Client
    from protocol.codes import ApplicationId

    async with running(tmp_path / "data") as app:
        client = await Client.connect(
            port=app.server.port,
            origin_host=UPF,
            applications=(ApplicationId.ADMINISTRATION,),
            encoding=0x01,
        )
        try:
            batch = bulk(entry("d-1", "4931", 5 * EUR), entry("d-1", "4932"))
            answer = await client.request(msgspec.structs.replace(batch, origin_host=UPF))
            assert isinstance(answer, AMA) and answer.result_code == 2001
            assert [(r.account_id, r.result_code) for r in answer.bulk_result or ()] == [
                ("d-1", 5004)
            ]
            history = msgspec.structs.replace(
                amr(AccountOperation.HISTORY, "d-1"), origin_host=UPF, history_limit=5
            )
            read = await client.request(history)
            assert isinstance(read, AMA) and read.movement_count == 1
            (opening,) = read.movement or ()
            assert (opening.movement_kind, opening.amount) == (MovementKind.OPENING, 5 * EUR)
        finally:
            await client.close()
