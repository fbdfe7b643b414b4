"""Every administrative operation is an audit log event (docs/operations.md, *Logs*,
`admin.operation`): over 127.0.0.1, each operation of the administration application (a
success or a refusal) gives one event naming the peer, the End-to-End-Id, the operation, the
account, the Operation-Id and amount when it carries them, and the Result-Code; a duplicate
answered from the cache is one more event, marked."""

from __future__ import annotations

from pathlib import Path

import msgspec
from structlog.testing import capture_logs

from protocol.codes import AccountOperation, AccountStatus, SubscriptionIdType
from protocol.messages import AMA, AMR, BulkAccount, SubscriptionId
from tests.charging.conftest import EUR, amr
from tests.charging.peer import UPF, Peer
from tests.charging.test_server_e2e import running

OP = AccountOperation


def _requests() -> list[tuple[AMR, int]]:
    """One request of every operation, with the Result-Code it gets in this order."""
    sub = SubscriptionId(
        subscription_id_type=SubscriptionIdType.END_USER_E164, subscription_id_data="491700000077"
    )
    create = msgspec.structs.replace(
        amr(OP.CREATE, "aud", amount=3 * EUR, operation_id="c-1"), subscription_id=(sub,)
    )
    bulk = msgspec.structs.replace(
        amr(OP.CREATE_BULK, "-"), bulk_account=(BulkAccount(account_id="aud-2", amount=EUR),)
    )
    return [
        (create, 2001),
        (bulk, 2001),
        (amr(OP.GET, "aud"), 2001),
        (amr(OP.CREDIT, "aud", amount=EUR, operation_id="t-1"), 2001),
        (amr(OP.DEBIT, "aud", amount=50 * EUR, operation_id="d-1"), 4012),  # refused: logged
        (amr(OP.DEBIT, "aud", amount=4 * EUR, operation_id="d-2"), 2001),
        (amr(OP.SET_STATUS, "aud", status=AccountStatus.SUSPENDED), 2001),
        (amr(OP.UPDATE, "aud", status=AccountStatus.ACTIVE, credit_limit=EUR), 2001),
        (amr(OP.TERMINATE_SESSION, "aud", session_id=f"{UPF};none"), 5002),
        (amr(OP.CATALOG_SHOW, "-"), 2001),
        (amr(OP.LIST, "\x00"), 2001),
        (msgspec.structs.replace(amr(OP.SEARCH, "-"), subscription_id=(sub,)), 2001),
        (amr(OP.HISTORY, "aud"), 2001),
        (amr(OP.CDR_ROTATE, "cdr"), 2001),
        # offers: the balance (3 + 1 - 4 = 0 EUR) cannot pay bundle-15's 15.00 EUR fee: 4012
        (msgspec.structs.replace(amr(OP.SUBSCRIBE, "aud"), offer_name="bundle-15"), 4012),
        (msgspec.structs.replace(amr(OP.UNSUBSCRIBE, "aud"), offer_name="bundle-15"), 5004),
        # groups: "aud" joins the group account "aud-2" (the demo catalog's package "family"),
        # asks its statement (the open month) and leaves, so that CLOSE below succeeds
        (
            msgspec.structs.replace(
                amr(OP.GROUP_JOIN, "aud", operation_id="g-1"),
                group_account_id="aud-2",
                package_name="family",
            ),
            2001,
        ),
        (amr(OP.STATEMENT, "aud"), 2001),
        (amr(OP.GROUP_LEAVE, "aud", operation_id="g-2"), 2001),
        (amr(OP.LOAN, "aud"), 5005),  # loans: a LOAN without its Amount, refused and logged
        (amr(OP.CLOSE, "aud", operation_id="x-1"), 2001),
    ]


async def test_every_administrative_operation_is_an_audit_event(tmp_path: Path) -> None:
    requests = _requests()
    assert {r.account_operation for r, _ in requests} == set(AccountOperation)
    with capture_logs() as logs:
        async with running(tmp_path / "data") as app:
            client = await Peer().connect(app.server.port)
            try:
                for e2e, (request, code) in enumerate(requests, start=100):
                    message = msgspec.structs.replace(request, origin_host=UPF)
                    answer = await client.request(message, end_to_end=e2e)
                    assert isinstance(answer, AMA) and answer.result_code == code, answer
                # the same request again (same End-to-End-Id): the cached answer, logged
                again = await client.request(
                    msgspec.structs.replace(requests[2][0], origin_host=UPF), end_to_end=102
                )
                assert again.result_code == 2001
            finally:
                await client.close()
    events = [e for e in logs if e["event"] == "admin.operation"]
    assert [(e["operation"], e["result_code"]) for e in events] == [
        *((r.account_operation.name, code) for r, code in requests),
        ("GET", 2001),
    ]
    assert events[1]["accounts"] == 1 and events[1]["first_account"] == "aud-2"
    loan = next(e for e in events if e["operation"] == "LOAN")
    assert loan["account"] == "aud" and loan["result_code"] == 5005 and "amount" not in loan
    assert all(e["peer"] == UPF and e["log_level"] == "info" for e in events)
    assert [e["end_to_end"] for e in events] == [*range(100, 100 + len(requests)), 102]
    assert [e["duplicate"] for e in events] == [False] * len(requests) + [True]
    create, _, _, credit, refused = events[:5]
    assert create["account"] == "aud" and create["amount"] == 3 * EUR
    assert create["operation_id"] == "c-1" and create["identities"] == ["0:491700000077"]
    assert (credit["operation_id"], credit["amount"]) == ("t-1", EUR)
    assert (refused["operation_id"], refused["amount"]) == ("d-1", 50 * EUR)
    by_op = {e["operation"]: e for e in events}
    assert by_op["UPDATE"]["status"] == "ACTIVE" and by_op["UPDATE"]["credit_limit"] == EUR
    assert by_op["TERMINATE_SESSION"]["session"] == f"{UPF};none"
    assert by_op["SUBSCRIBE"]["offer"] == "bundle-15"
    join = by_op["GROUP_JOIN"]
    assert (join["group"], join["package"], join["operation_id"]) == ("aud-2", "family", "g-1")
