"""A harness over the charging core: requests built from plain values, every input the app
would journal recorded (requests that were not duplicates, due ticks, catalogs), CDRs and actions
collected, and a replay of the recorded inputs into a fresh core."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from ocs.core.charging import (
    Action,
    ChargingCore,
    Input,
    InputKind,
    Result,
    Settings,
    settings_input,
)
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import demo_catalog_text
from protocol.codec import decode_body, encode_body
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    AoCRequestType,
    CCRequestType,
    CommandCode,
    ReportingReason,
    RequestedAction,
    SubscriptionIdType,
    TariffChangeUsage,
)
from protocol.limits import MAX_SESSIONS_PER_PEER, MAX_TOMBSTONES_PER_PEER
from protocol.messages import (
    AMA,
    AMR,
    CCA,
    CCR,
    MsccAnswer,
    MsccRequest,
    ServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)

DEMO = demo_catalog_text()
DATA = "32251@3gpp.org"
SMS = "32274@3gpp.org"
VOICE = "32260@3gpp.org"
UPF = "upf1.test.local"
MiB = 1 << 20
KiB = 1 << 10
EUR = 1_000_000  # micro-units
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


INITIAL = CCRequestType.INITIAL
UPDATE = CCRequestType.UPDATE
TERMINATION = CCRequestType.TERMINATION
EVENT = CCRequestType.EVENT
SUB = "491700000001"  # the subscriber most tests charge
WINDOW = 4 * 60_000  # the duplicate window (WIRE.md 6), ms


def epoch_s(iso: str) -> int:
    """Epoch seconds of an ISO 8601 instant with an offset (integer arithmetic only)."""
    return (datetime.fromisoformat(iso) - _EPOCH) // timedelta(seconds=1)


def epoch_ms(iso: str) -> int:
    return epoch_s(iso) * 1000


# Monday 2026-01-05 14:00 Paris (UTC+1): peak for RG 10 (0.02 EUR/MiB), weekday voice.
PEAK = epoch_ms("2026-01-05T14:00:00+01:00")
# Sunday 2026-01-11 14:00 Paris: off-peak data (0.01 EUR/MiB), weekend voice (half price).
SUNDAY = epoch_ms("2026-01-11T14:00:00+01:00")
# Monday 19:30 Paris: a one-hour grant spans the end of peak at 20:00.
EVENING = epoch_ms("2026-01-05T19:30:00+01:00")
PEAK_END_S = epoch_s("2026-01-05T20:00:00+01:00")


def rsu(
    *, octets: int | None = None, seconds: int | None = None, units: int | None = None
) -> ServiceUnit:
    return ServiceUnit(cc_total_octets=octets, cc_time=seconds, cc_service_specific_units=units)


def usu(
    *,
    octets: int | None = None,
    seconds: int | None = None,
    units: int | None = None,
    uplink: int | None = None,
    downlink: int | None = None,
    tcu: TariffChangeUsage | None = None,
    reason: ReportingReason | None = None,
) -> UsedServiceUnit:
    return UsedServiceUnit(
        cc_total_octets=octets,
        cc_time=seconds,
        cc_service_specific_units=units,
        cc_input_octets=uplink,
        cc_output_octets=downlink,
        tariff_change_usage=tcu,
        reporting_reason=reason,
    )


def mscc(
    rg: int,
    *,
    ask: ServiceUnit | None = None,
    used: tuple[UsedServiceUnit, ...] | None = None,
    reason: ReportingReason | None = None,
) -> MsccRequest:
    return MsccRequest(
        rating_group=rg, requested_service_unit=ask, used_service_unit=used, reporting_reason=reason
    )


def sid(name: str, origin: str = UPF) -> str:
    """The Session-Id `ccr` makes of a local name for the peer `origin`."""
    return f"{origin};{name}"


def ccr(
    session_id: str,
    kind: CCRequestType,
    number: int,
    *msccs: MsccRequest,
    subscriber: str | None = None,
    subscriber_type: SubscriptionIdType = SubscriptionIdType.END_USER_E164,
    service: str = DATA,
    origin: str = UPF,
    action: RequestedAction | None = None,
    event_timestamp: int | None = None,
    aoc: AoCRequestType | None = None,
    service_information: dict[str, Any] | None = None,
) -> CCR:
    """A CCR from `origin`. A `session_id` without ";" is a name local to the peer: the
    Session-Id is `<origin>;<name>` (WIRE.md 5.3: it begins with the opener's Origin-Host);
    one with ";" is used as given (`sid` spells the former)."""
    subs = (
        (
            SubscriptionId(
                subscription_id_type=subscriber_type,
                subscription_id_data=subscriber,
            ),
        )
        if subscriber is not None
        else None
    )
    return CCR(
        session_id=session_id if ";" in session_id else sid(session_id, origin),
        origin_host=origin,
        origin_realm="test.local",
        destination_realm="test.local",
        auth_application_id=4,
        service_context_id=service,
        cc_request_type=kind,
        cc_request_number=number,
        subscription_id=subs,
        requested_action=action,
        event_timestamp=event_timestamp,
        multiple_services_credit_control=msccs or None,
        aoc_request_type=aoc,
        service_information=service_information,
    )


def amr(
    op: AccountOperation,
    account_id: str,
    *,
    amount: int | None = None,
    subscriber: str | None = None,
    subscriber_type: SubscriptionIdType = SubscriptionIdType.END_USER_E164,
    status: AccountStatus | None = None,
    credit_limit: int | None = None,
    operation_id: str | None = None,
    session_id: str | None = None,
    origin: str = "admin.test.local",
) -> AMR:
    subs = (
        (
            SubscriptionId(
                subscription_id_type=subscriber_type,
                subscription_id_data=subscriber,
            ),
        )
        if subscriber is not None
        else None
    )
    return AMR(
        origin_host=origin,
        origin_realm="test.local",
        account_operation=op,
        account_id=account_id,
        subscription_id=subs,
        amount=amount,
        credit_limit=credit_limit,
        account_status=status,
        operation_id=operation_id,
        session_id=session_id,
    )


def only(answer: CCA) -> MsccAnswer:
    """The single MSCC of an answer."""
    msccs = answer.multiple_services_credit_control
    assert msccs is not None and len(msccs) == 1, msccs
    return msccs[0]


def by_rg(answer: CCA) -> dict[int, MsccAnswer]:
    return {m.rating_group: m for m in answer.multiple_services_credit_control or ()}


@dataclass
class Harness:
    """The core as the app drives it, with the record of what the app would journal."""

    catalog: str = DEMO
    min_tcc_s: int = 120
    ledger: Ledger = field(default_factory=Ledger)
    core: ChargingCore = field(init=False)
    inputs: list[Input] = field(default_factory=list)
    cdr_lines: list[tuple[int, bytes]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    e2e: int = 1000
    # the per-peer bounds of every ChargingCore it builds (set low for a test)
    max_sessions_per_peer: int = MAX_SESSIONS_PER_PEER
    max_tombstones_per_peer: int = MAX_TOMBSTONES_PER_PEER

    def __post_init__(self) -> None:
        self.core = self._core(self.ledger, self.catalog)
        # the app journals the catalog in force when the journal does not hold it yet
        self.load_catalog(self.catalog, 0)

    # --- inputs ---------------------------------------------------------------------------

    def send(
        self, message: CCR | AMR, now_ms: int, *, e2e: int | None = None, origin: str | None = None
    ) -> Result:
        """One request, through its encoded body as on the wire."""
        if e2e is None:
            self.e2e += 1
            e2e = self.e2e
        command = (
            CommandCode.CREDIT_CONTROL
            if isinstance(message, CCR)
            else CommandCode.ACCOUNT_MANAGEMENT
        )
        body = encode_body(message)
        decoded = decode_body(command, True, body)
        host = origin if origin is not None else message.origin_host
        if isinstance(decoded, CCR):
            result = self.core.handle_ccr(now_ms, host, e2e, decoded)
        else:
            assert isinstance(decoded, AMR)
            result = self.core.handle_amr(now_ms, host, e2e, decoded)
        if not result.duplicate:
            self.inputs.append(
                Input(
                    kind=InputKind.REQUEST,
                    now_ms=now_ms,
                    origin_host=host,
                    end_to_end=e2e,
                    command=int(command),
                    body=body,
                )
            )
        self._collect()
        return result

    def cca(self, message: CCR, now_ms: int, *, e2e: int | None = None) -> CCA:
        answer = self.send(message, now_ms, e2e=e2e).answer
        assert isinstance(answer, CCA)
        return answer

    def ama(self, message: AMR, now_ms: int, *, e2e: int | None = None) -> AMA:
        answer = self.send(message, now_ms, e2e=e2e).answer
        assert isinstance(answer, AMA)
        return answer

    def tick(self, now_ms: int) -> bool:
        """What the app's timer does: journal and run a tick only when it is due."""
        if not self.core.due(now_ms):
            return False
        self.inputs.append(Input(kind=InputKind.TICK, now_ms=now_ms))
        self.core.tick(now_ms)
        self._collect()
        return True

    def load_catalog(self, text: str, now_ms: int) -> None:
        record = Input(kind=InputKind.CATALOG, now_ms=now_ms, body=text.encode())
        self.inputs.append(record)
        self.core.apply(record)
        self._collect()

    def settings(self, now_ms: int, *, refund_window_s: int) -> None:
        """Put core settings in force as the app does: a journaled SETTINGS input."""
        record = settings_input(now_ms, Settings(refund_window_s=refund_window_s))
        self.inputs.append(record)
        self.core.apply(record)
        self._collect()

    def _collect(self) -> None:
        self.cdr_lines.extend(self.core.take_cdrs())
        self.actions.extend(self.core.take_actions())
        self.core.take_closed()

    # --- conveniences ---------------------------------------------------------------------

    def account(
        self,
        account_id: str,
        subscriber: str,
        balance: int,
        *,
        now_ms: int = PEAK,
        credit_limit: int | None = None,
    ) -> None:
        answer = self.ama(
            amr(
                AccountOperation.CREATE,
                account_id,
                amount=balance,
                subscriber=subscriber,
                credit_limit=credit_limit,
            ),
            now_ms,
        )
        assert answer.result_code == 2001, answer

    def balance(self, account_id: str) -> int:
        """The posted balance (before reservations)."""
        view = self.ledger.account(account_id)
        assert view is not None
        return view.balance

    def reserved(self, account_id: str) -> int:
        view = self.ledger.account(account_id)
        assert view is not None
        return view.reserved

    def cdrs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for _, line in self.cdr_lines]

    def cdr_total(self, account_id: str | None = None) -> int:
        return sum(
            r["charge"] for r in self.cdrs() if account_id is None or r["accountId"] == account_id
        )

    def take_actions(self) -> list[Action]:
        actions, self.actions = self.actions, []
        return actions

    def _core(self, ledger: Ledger, catalog: str) -> ChargingCore:
        return ChargingCore(
            ledger,
            catalog,
            min_tcc_s=self.min_tcc_s,
            max_sessions_per_peer=self.max_sessions_per_peer,
            max_tombstones_per_peer=self.max_tombstones_per_peer,
        )

    def replay(self) -> Harness:
        """A fresh core fed the recorded inputs, as recovery does (actions suppressed)."""
        fresh = Harness.__new__(Harness)
        fresh.catalog = self.catalog
        fresh.min_tcc_s = self.min_tcc_s
        fresh.max_sessions_per_peer = self.max_sessions_per_peer
        fresh.max_tombstones_per_peer = self.max_tombstones_per_peer
        fresh.ledger = Ledger()
        fresh.core = fresh._core(fresh.ledger, self.catalog)
        fresh.inputs = list(self.inputs)
        fresh.cdr_lines = []
        fresh.actions = []
        fresh.e2e = self.e2e
        for record in self.inputs:
            fresh.core.apply(record)
            fresh.core.take_actions()  # effects of the past: recovery discards them
            fresh.core.take_closed()
        fresh.cdr_lines.extend(fresh.core.take_cdrs())
        return fresh

    def restart(self) -> None:
        """A checkpoint and a restart: the ledger and the core restored from their snapshots."""
        ledger = Ledger()
        ledger.restore(self.ledger.snapshot())
        core = self._core(ledger, DEMO)
        core.restore(self.core.snapshot())
        self.ledger, self.core = ledger, core

    def assert_replays(self) -> None:
        """Replay reproduces the state byte for byte and the same numbered CDR lines."""
        fresh = self.replay()
        assert fresh.core.snapshot() == self.core.snapshot()
        assert fresh.ledger.snapshot() == self.ledger.snapshot()
        assert fresh.cdr_lines == self.cdr_lines
        assert fresh.actions == []


@pytest.fixture
def h() -> Iterator[Harness]:
    """A core on the demo catalog. After the test, whatever it did: the books balance, and
    replaying what the app would have journaled rebuilds the same state and CDRs."""
    harness = Harness()
    yield harness
    harness.ledger.check_invariants()
    harness.assert_replays()
