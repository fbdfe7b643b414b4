"""The group extension's AVPs (docs/protocol.md, *Extension: shared group packages*) in both
body encodings: MessagePack by name, binary by the OCS vendor codes 30-39."""

from __future__ import annotations

import msgspec
import pytest

from protocol.avp import decode_avps, encode_avps
from protocol.codec import decode_body, encode_body
from protocol.codes import AccountOperation, CommandCode
from protocol.dictionary import BY_NAME, VENDOR_OCS
from protocol.errors import ProtocolError
from protocol.messages import AMA, AMR, Statement, StatementService

JOIN = AMR(
    origin_host="admin.test.local",
    origin_realm="test.local",
    account_operation=AccountOperation.GROUP_JOIN,
    account_id="alice",
    group_account_id="family",
    package_name="family",
    period_start=1_793_520_000,
)
ANSWER = AMA(
    result_code=2001,
    origin_host="ocs.test.local",
    origin_realm="test.local",
    statement=Statement(
        group_account_id="family",
        package_name="family",
        period_start=1_793_520_000,
        period_end=1_796_079_600,
        statement_service=(
            StatementService(
                service_name="voice", used_units=1_000, usage_charge=1_000_000, share=13_333_333
            ),
            StatementService(
                service_name="data", used_units=2 << 30, usage_charge=2_048_000, share=8_571_429
            ),
        ),
        usage_charge=3_048_000,
        share=21_904_762,
    ),
)


def test_codes_30_to_39_of_the_ocs_vendor() -> None:
    names = [
        "Group-Account-Id",
        "Package-Name",
        "Statement",
        "Statement-Service",
        "Service-Name",
        "Used-Units",
        "Usage-Charge",
        "Share",
        "Period-Start",
        "Period-End",
    ]
    assert [(BY_NAME[n].code, BY_NAME[n].vendor_id) for n in names] == [
        (code, VENDOR_OCS) for code in range(30, 40)
    ]
    assert not any(BY_NAME[n].mandatory for n in names)


@pytest.mark.parametrize("message", [JOIN, ANSWER])
def test_both_encodings_round_trip(message: AMR | AMA) -> None:
    command = CommandCode.ACCOUNT_MANAGEMENT
    request = isinstance(message, AMR)
    assert decode_body(command, request, encode_body(message)) == message
    assert decode_avps(command, request, encode_avps(message)) == message


def test_a_package_name_out_of_its_domain_is_5004() -> None:
    long = msgspec.structs.replace(JOIN, package_name="p" * 65)
    with pytest.raises(ProtocolError) as refused:
        decode_body(CommandCode.ACCOUNT_MANAGEMENT, True, encode_body(long))
    assert refused.value.result_code == 5004


def test_the_bounds_agree() -> None:
    from ocs.core.ledger_types import MAX_ID_LENGTH
    from protocol.limits import MAX_ACCOUNT_ID_LENGTH, MAX_PACKAGE_NAME_LENGTH
    from rating.packages import MAX_NAME_LENGTH

    assert MAX_NAME_LENGTH == MAX_PACKAGE_NAME_LENGTH
    # the fee's ledger operation id: group-fee|<group>|<period start ms>
    assert len("group-fee||") + MAX_ACCOUNT_ID_LENGTH + len(str(2**62)) <= MAX_ID_LENGTH
