"""What the simulated network elements send: normal traffic from a client model, and hostile
requests by class (`HOSTILE`; docs/vopr.md says what each class sends and checks).

Every request is a `Probe`: a body built as plain Python values and packed with
`tests.vopr.rawpack` (so it may say anything MessagePack can), the peer it goes out on, and
optionally what it expects beyond the invariants the simulator checks after every step
(`Expect`: the Result-Codes allowed, that nothing changes, the same answer as an earlier
request). The client model learns from the answers (`Probe.on_answer`), as a real client would:
a session goes on once its last request was answered.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from protocol.codec import decode_body
from protocol.codes import DEFAULT_MAX_MESSAGE_LENGTH, CommandCode
from protocol.errors import ProtocolError
from protocol.limits import (
    EVENT_TIMESTAMP_FUTURE_S,
    EVENT_TIMESTAMP_PAST_S,
    MAX_ACCOUNT_ID_LENGTH,
    MAX_AMOUNT,
    MAX_OPAQUE_ITEMS,
    MAX_OPERATION_ID_LENGTH,
    MAX_SESSION_ID_LENGTH,
    MAX_SUBSCRIPTION_DATA_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_UNITS,
    MAX_USU,
)
from protocol.messages import CCA, Answer
from tests.vopr.rawpack import Ext, Pairs, bad_str, pack

T = TypeVar("T")

DATA: Final = "32251@3gpp.org"
SMS: Final = "32274@3gpp.org"
VOICE: Final = "32260@3gpp.org"
SERVICE_RGS: Final = {DATA: (10, 20, 50), VOICE: (40,), SMS: (30,)}
UNIT_KEY: Final = {
    10: "CC-Total-Octets",
    20: "CC-Total-Octets",
    50: "CC-Total-Octets",
    99: "CC-Total-Octets",
    40: "CC-Time",
    30: "CC-Service-Specific-Units",
}
UNIT_KEYS: Final = frozenset(
    {
        "CC-Time",
        "CC-Total-Octets",
        "CC-Input-Octets",
        "CC-Output-Octets",
        "CC-Service-Specific-Units",
    }
)
MSCC: Final = "Multiple-Services-Credit-Control"
MiB: Final = 1 << 20
EUR: Final = 1_000_000
REALM: Final = "sim.test"
DUPLICATE_WINDOW_MS: Final = 4 * 60 * 1000
WINDOW_MARGIN_MS: Final = 2_000  # expect a duplicate only well inside the window

HEADER_BYTES: Final = 20
CCR_CMD: Final = int(CommandCode.CREDIT_CONTROL)
AMR_CMD: Final = int(CommandCode.ACCOUNT_MANAGEMENT)
# top-level Result-Codes that refuse the request: it must change nothing
REFUSALS: Final = frozenset(
    {3001, 3004, 3007, 3008, 3009, 3010, 4010, 5002, 5004, 5005, 5009, 5012, 5030}
)

HOSTILE: Final = (
    "wire",
    "sequence",
    "usage",
    "amounts",
    "time",
    "strings",
    "maps",
    "events",
    "refunds",
    "ownership",
    "peers",
)

U32: Final = (1 << 32) - 1
U64: Final = (1 << 64) - 1
I64: Final = (1 << 63) - 1
BOUNDS_U32: Final = (0, 1, (1 << 31) - 1, 1 << 31, U32 - 1, U32)
BOUNDS_U64: Final = (
    0,
    1,
    U32,
    1 << 32,
    (1 << 40) + 7,
    (1 << 53) + 1,
    10**15,
    10**18,
    1 << 62,
    I64,
    1 << 63,
    U64 - 1,
    U64,
)
BOUNDS_I64: Final = (
    -(1 << 63),
    -(10**15) - 1,
    -(10**15),
    -1,
    0,
    1,
    10**15 - 1,
    10**15,
    10**15 + 1,
    1 << 62,
    I64,
)
# wrong in type or sign (valid numbers at their bounds are the classes `usage` and `amounts`)
WRONG_VALUES: Final[tuple[Any, ...]] = (
    None,
    True,
    False,
    -1,
    -(1 << 63),
    1 << 32,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x",
    "1",
    b"\x00",
    [],
    [1],
    {},
    {"a": 1},
    Ext(1, b"xyz"),
)


@dataclass(frozen=True, slots=True)
class Expect:
    """What a probe expects beyond the invariants. `finding` names the class of the finding
    if it does not hold."""

    finding: str
    codes: frozenset[int] | None = None
    unchanged: bool = False
    same_as: bytes | None = None
    failed_avp: str | None = None  # the key Failed-AVP must name


def out_of_domain(finding: str, key: str) -> Expect:
    """A value outside the domain protocol/limits.py documents: 5004 naming it, no change."""
    return Expect(finding=finding, codes=frozenset({5004}), unchanged=True, failed_avp=key)


def units_expect(msccs: list[dict[str, Any]]) -> Expect | None:
    """5004, no change, for MSCCs with units outside their domain (docs/protocol.md, limits):
    a unit AVP above `MAX_UNITS`, a Requested-Service-Unit whose input + output octets are,
    more than `MAX_USU` Used-Service-Units. None if they are within it."""
    for mscc in msccs:
        usus = mscc.get("Used-Service-Unit", ())
        units = [*usus, mscc.get("Requested-Service-Unit", {})]
        rsu = units[-1]
        if (
            len(usus) > MAX_USU
            or any(v > MAX_UNITS for u in units for k, v in u.items() if k in UNIT_KEYS)
            or rsu.get("CC-Input-Octets", 0) + rsu.get("CC-Output-Octets", 0) > MAX_UNITS
        ):
            return Expect(finding="usage", codes=frozenset({5004}), unchanged=True)
    return None


@dataclass(eq=False)
class Probe:
    """One request: what is sent, and what became of it (filled in by the simulator)."""

    peer: str  # the wire peer (its CER's Origin-Host) it is sent on
    command: int
    body: bytes
    label: str
    cls: str = "normal"
    e2e: int | None = None  # None: the peer's next End-to-End-Id
    retransmit: bool = False
    header_flags: int = 0  # flags besides R (and T): reserved bits, P, E
    app: int | None = None  # the Application-Id, if not the command's
    expect: Expect | None = None
    on_answer: Callable[[Probe, Answer], None] | None = None
    value: Any = None  # the body as built (for the report)
    # filled in by the simulator
    step: int = -1
    hbh: int = 0
    sent_ms: int = 0
    handled: bool = False  # a handler (the node) answered it, not the connection
    lsn: int | None = None  # its journal record, if it has one
    lost: bool = False  # its record was lost in a crash (it was never acknowledged)
    changed: bool | None = None  # whether the state changed (computed for some probes)
    answer: bytes | None = None  # the answer's body as the peer received it
    answer_flags: int = 0
    result_code: int | None = None


@dataclass
class AccountModel:
    account_id: str
    subscriber: str
    status: int = 0


@dataclass
class ClientSession:
    sid: str
    peer: str
    service: str
    subscriber: str
    number: int = 0  # the last CC-Request-Number sent
    grants: dict[int, int] = field(default_factory=dict)  # rating group -> units granted
    busy: bool = True  # a request is unanswered
    open: bool = False  # the server answered its INITIAL 2001
    reauth: bool = False  # RAR received: the next UPDATE says FORCED_REAUTHORISATION
    abort: bool = False  # ASR received: terminate next
    last: Probe | None = None


@dataclass
class Debited:
    """An EVENT DIRECT_DEBITING the server answered 2001: what a legitimate refund gives back."""

    peer: str
    subscriber: str
    rg: int
    units: int
    at_s: int


class Workload:
    """The network elements: their peers, accounts, sessions and what they have seen."""

    def __init__(self, rng: random.Random, hostile: frozenset[str], now_ms: Callable[[], int]):
        self.rng = rng
        self.hostile = tuple(c for c in HOSTILE if c in hostile)
        self.now_ms = now_ms
        self.peers = ["upf1.sim.test", "upf2.sim.test", "scp1.sim.test", "admin.sim.test"]
        self.accounts: list[AccountModel] = []
        self.sessions: dict[str, ClientSession] = {}
        self.closed: deque[str] = deque(maxlen=50)  # Session-Ids closed lately
        self.history: deque[Probe] = deque(maxlen=400)  # answered probes, for retransmissions
        self.events: deque[Probe] = deque(maxlen=100)  # answered EVENTs
        self.debited: deque[Debited] = deque(maxlen=100)
        self.operation_ids: deque[tuple[str, bytes]] = deque(maxlen=50)
        self.odd_peers: list[str] = []  # Origin-Hosts of the `peers` class
        self.serial = 0
        self.account_serial = 0
        # the server's last CC-Request-Number of an open session (None: it holds no such
        # session): the oracle of what a request must get, and how clients stay in step when a
        # hostile request moved one of their sessions on
        self.server_number: Callable[[str], int | None] = lambda sid: None
        # the units of a rating group DIRECT_DEBITING took from a subscriber and refunds did
        # not give back, by the CDRs (the oracle of a refund beyond them)
        self.refundable_units: Callable[[str, int], int] = lambda subscriber, rg: 0

    # --- helpers -------------------------------------------------------------------------------

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.rng.randrange(len(seq))]

    def ccr(
        self,
        peer: str,
        sid: str,
        kind: int,
        number: int,
        *,
        service: str,
        subscriber: str | None = None,
        msccs: list[dict[str, Any]] | None = None,
        action: int | None = None,
        event_ts: int | None = None,
        aoc: int | None = None,
        info: Any = None,
        origin: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Session-Id": sid,
            "Origin-Host": origin if origin is not None else peer,
            "Origin-Realm": REALM,
            "Destination-Realm": "test.local",
            "Auth-Application-Id": 4,
            "Service-Context-Id": service,
            "CC-Request-Type": kind,
            "CC-Request-Number": number,
        }
        if subscriber is not None:
            body["Subscription-Id"] = [
                {"Subscription-Id-Type": 0, "Subscription-Id-Data": subscriber}
            ]
        if action is not None:
            body["Requested-Action"] = action
        if event_ts is not None:
            body["Event-Timestamp"] = event_ts
        if msccs:
            body["Multiple-Services-Credit-Control"] = msccs
        if aoc is not None:
            body["AoC-Request-Type"] = aoc
        if info is not None:
            body["Service-Information"] = info
        return body

    def amr(self, peer: str, op: int, account_id: Any, **keys: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Origin-Host": peer,
            "Origin-Realm": REALM,
            "Account-Operation": op,
            "Account-Id": account_id,
        }
        body.update(keys)
        return body

    def probe(
        self, peer: str, command: int, value: Any, label: str, cls: str = "normal", **kw: Any
    ) -> Probe:
        body = pack(value)
        expect = kw.get("expect")
        if (
            expect is not None
            and expect.failed_avp is not None
            and HEADER_BYTES + len(body) > DEFAULT_MAX_MESSAGE_LENGTH
        ):
            # longer than the server reads (WIRE.md 1): 5015 before the body is looked at
            kw["expect"] = Expect(finding=expect.finding, codes=frozenset({5015}), unchanged=True)
        return Probe(peer=peer, command=command, body=body, label=label, cls=cls, value=value, **kw)

    def account(self) -> AccountModel | None:
        return self.pick(self.accounts) if self.accounts else None

    def session_peer(self, service: str) -> str:
        if service == DATA:
            return self.pick(self.peers[:2])
        return self.peers[2]

    def idle_sessions(self) -> list[ClientSession]:
        return [s for s in self.sessions.values() if not s.busy]

    # --- normal traffic ------------------------------------------------------------------------

    def normal(self) -> Probe | None:
        rng = self.rng
        if len(self.accounts) < 3 or rng.random() < 0.02:
            return self.create_account()
        idle = self.idle_sessions()
        for s in idle:
            if s.abort:
                return self.terminate(s)
        roll = rng.random()
        if roll < 0.18 and len(self.sessions) < 24:
            return self.initial()
        if roll < 0.52 and idle:
            s = self.pick(idle)
            if s.reauth or rng.random() < 0.75:
                return self.update(s)
            return self.terminate(s)
        if roll < 0.70:
            return self.event()
        if roll < 0.82:
            return self.admin()
        if roll < 0.95:
            return self.retransmission()
        return self.repeat_last()

    def create_account(self, **override: Any) -> Probe:
        rng = self.rng
        self.account_serial += 1
        n = self.account_serial
        account_id = f"acct-{n:04d}"
        subscriber = f"4917{n:08d}"
        balance = self.pick([0, 30_000, 300_000, 5 * EUR, 50 * EUR, 1000 * EUR])
        keys: dict[str, Any] = {
            "Subscription-Id": [{"Subscription-Id-Type": 0, "Subscription-Id-Data": subscriber}],
            "Amount": balance,
            "Credit-Limit": self.pick([0, 0, 0, EUR]),
        }
        keys.update(override)
        value = self.amr(self.peers[3], 1, account_id, **keys)
        model = AccountModel(account_id=account_id, subscriber=subscriber)

        def created(probe: Probe, answer: Answer) -> None:
            if answer.result_code == 2001:
                self.accounts.append(model)

        del rng
        return self.probe(self.peers[3], AMR_CMD, value, "create", on_answer=created)

    def mscc_ask(self, rg: int) -> dict[str, Any]:
        rng = self.rng
        mscc: dict[str, Any] = {"Rating-Group": rg}
        if rng.random() < 0.3:
            mscc["Requested-Service-Unit"] = {}
        else:
            mscc["Requested-Service-Unit"] = {UNIT_KEY[rg]: self.amount(rg)}
        return mscc

    def amount(self, rg: int, granted: int | None = None) -> int:
        rng = self.rng
        if granted is not None and rng.random() < 0.8:
            return rng.randint(0, granted + granted // 3)
        if rg == 30:
            return rng.randint(0, 3)
        if rg == 40:
            return rng.randint(0, 900)
        return rng.randint(0, 30 * MiB)

    def initial(self) -> Probe | None:
        account = self.account()
        if account is None:
            return None
        rng = self.rng
        service = self.pick([DATA, DATA, DATA, VOICE, SMS])
        peer = self.session_peer(service)
        sid = f"{peer};{self.next_serial()};s"
        rgs = [rg for rg in SERVICE_RGS[service] if rng.random() < 0.7] or [SERVICE_RGS[service][0]]
        if rng.random() < 0.05:
            rgs.append(99)  # unknown to the service: 5031 for that MSCC
        msccs = [self.mscc_ask(rg) for rg in rgs]
        value = self.ccr(
            peer,
            sid,
            1,
            0,
            service=service,
            subscriber=account.subscriber,
            msccs=msccs,
            aoc=self.pick([None, None, None, 1, 2, 3]),
            info={"imsi": account.subscriber, "apn": "internet"} if rng.random() < 0.2 else None,
        )
        session = ClientSession(sid=sid, peer=peer, service=service, subscriber=account.subscriber)
        self.sessions[sid] = session
        probe = self.probe(peer, CCR_CMD, value, "initial", on_answer=self.session_answer)
        session.last = probe
        return probe

    def usage_msccs(self, s: ClientSession, *, final: bool) -> list[dict[str, Any]]:
        rng = self.rng
        msccs: list[dict[str, Any]] = []
        linked: int | None = None  # units of RG 10 reported as linked to RG 20's report
        for rg, granted in list(s.grants.items()):
            if rg == 50:
                continue
            usus: list[dict[str, Any]] = []
            if rng.random() < 0.15:  # split at a tariff change
                for tcu in (0, 1):
                    usus.append(
                        {UNIT_KEY[rg]: self.amount(rg, granted // 2), "Tariff-Change-Usage": tcu}
                    )
            else:
                usu: dict[str, Any] = {UNIT_KEY[rg]: self.amount(rg, granted)}
                if rng.random() < 0.05:
                    usu["Tariff-Change-Usage"] = 2
                if rg in (10, 20) and rng.random() < 0.2:
                    usu = {
                        "CC-Input-Octets": self.amount(rg, granted // 2),
                        "CC-Output-Octets": self.amount(rg, granted // 2),
                    }
                usus.append(usu)
            mscc: dict[str, Any] = {"Rating-Group": rg, "Used-Service-Unit": usus}
            if final:
                mscc["Reporting-Reason"] = 2
            elif s.reauth:
                mscc["Reporting-Reason"] = 7
            else:
                mscc["Reporting-Reason"] = self.pick([0, 3, 4, 1])
                if mscc["Reporting-Reason"] != 1 and rng.random() < 0.8:
                    mscc["Requested-Service-Unit"] = self.mscc_ask(rg)["Requested-Service-Unit"]
            msccs.append(mscc)
            if rg == 20 and mscc["Reporting-Reason"] in (0, 2, 3, 4) and rng.random() < 0.7:
                linked = self.amount(10, granted)
        # linked usage (WIRE.md 5.6) for RG 10, unless the request reports RG 10 itself: each
        # Rating-Group at most once per request (docs/protocol.md, limits)
        if linked is not None and all(m["Rating-Group"] != 10 for m in msccs):
            msccs.append(
                {
                    "Rating-Group": 10,
                    "Used-Service-Unit": [{"CC-Total-Octets": linked, "Reporting-Reason": 100}],
                }
            )
        if not final and not msccs and rng.random() < 0.8:
            for rg in SERVICE_RGS[s.service]:
                if rng.random() < 0.6:
                    msccs.append(self.mscc_ask(rg))
        return msccs

    def update(self, s: ClientSession) -> Probe:
        s.number += 1
        s.busy = True
        value = self.ccr(
            s.peer,
            s.sid,
            2,
            s.number,
            service=s.service,
            msccs=self.usage_msccs(s, final=False),
            aoc=self.pick([None, None, None, 1]),
        )
        s.reauth = False
        probe = self.probe(s.peer, CCR_CMD, value, "update", on_answer=self.session_answer)
        s.last = probe
        return probe

    def terminate(self, s: ClientSession) -> Probe:
        s.number += 1
        s.busy = True
        value = self.ccr(
            s.peer,
            s.sid,
            3,
            s.number,
            service=s.service,
            msccs=self.usage_msccs(s, final=True),
        )
        value["Termination-Cause"] = self.pick([1, 1, 4, 6])
        probe = self.probe(s.peer, CCR_CMD, value, "terminate", on_answer=self.session_answer)
        s.last = probe
        return probe

    def session_answer(self, probe: Probe, answer: Answer) -> None:
        if not isinstance(answer, CCA) or answer.session_id is None:
            return
        s = self.sessions.get(answer.session_id)
        if s is None or s.last is not probe:
            return
        s.busy = False
        code = answer.result_code
        kind = answer.cc_request_type
        if code != 2001 or kind is None or int(kind) == 3:
            del self.sessions[s.sid]
            self.closed.append(s.sid)
            return
        s.open = True
        grants: dict[int, int] = {}
        for m in answer.multiple_services_credit_control or ():
            gsu = m.granted_service_unit
            if m.result_code == 2001 and gsu is not None:
                units = gsu.cc_total_octets or gsu.cc_time or gsu.cc_service_specific_units or 0
                grants[m.rating_group] = units
        for rg, units in s.grants.items():  # groups not reported keep their grant
            if all(m.rating_group != rg for m in answer.multiple_services_credit_control or ()):
                grants.setdefault(rg, units)
        s.grants = grants

    def event(self) -> Probe | None:
        account = self.account()
        if account is None:
            return None
        rng = self.rng
        roll = rng.random()
        peer = self.peers[2] if rng.random() < 0.7 else self.peers[0]
        sid = f"{peer};{self.next_serial()};e"
        if roll < 0.15 and self.debited:
            d = self.debited[rng.randrange(len(self.debited))]
            self.debited.remove(d)
            value = self.ccr(
                d.peer,
                f"{d.peer};{self.next_serial()};r",
                4,
                0,
                service=SMS if d.rg == 30 else VOICE if d.rg == 40 else DATA,
                subscriber=d.subscriber,
                action=1,
                event_ts=d.at_s,
                msccs=[{"Rating-Group": d.rg, "Requested-Service-Unit": {UNIT_KEY[d.rg]: d.units}}],
            )
            return self.probe(d.peer, CCR_CMD, value, "refund", on_answer=self.event_answer)
        service = self.pick([SMS, SMS, VOICE, DATA])
        rg = {SMS: 30, VOICE: 40, DATA: 10}[service]
        units = self.amount(rg) or 1
        action = self.pick([0, 0, 0, 0, 2, 3])
        at_s = None
        if rng.random() < 0.2:
            at_s = self.now_ms() // 1000 - rng.randint(0, 3 * 3600)
        value = self.ccr(
            peer,
            sid,
            4,
            0,
            service=service,
            subscriber=account.subscriber,
            action=action,
            event_ts=at_s,
            msccs=[{"Rating-Group": rg, "Requested-Service-Unit": {UNIT_KEY[rg]: units}}],
            aoc=self.pick([None, None, 1]),
        )
        label = {0: "debit", 2: "check-balance", 3: "price-enquiry"}[action]
        return self.probe(peer, CCR_CMD, value, label, on_answer=self.event_answer)

    def event_answer(self, probe: Probe, answer: Answer) -> None:
        self.events.append(probe)
        value = probe.value
        if (
            probe.label == "debit"
            and answer.result_code == 2001
            and isinstance(value, dict)
            and isinstance(answer, CCA)
        ):
            for m in answer.multiple_services_credit_control or ():
                gsu = m.granted_service_unit
                if m.result_code != 2001 or gsu is None:
                    continue
                units = gsu.cc_total_octets or gsu.cc_time or gsu.cc_service_specific_units or 0
                at_s = value.get("Event-Timestamp", probe.sent_ms // 1000)
                self.debited.append(
                    Debited(
                        probe.peer,
                        value["Subscription-Id"][0]["Subscription-Id-Data"],
                        m.rating_group,
                        units,
                        at_s,
                    )
                )

    def admin(self) -> Probe | None:
        account = self.account()
        if account is None:
            return None
        rng = self.rng
        peer = self.peers[3]
        roll = rng.random()
        if roll < 0.2:
            return self.probe(peer, AMR_CMD, self.amr(peer, 2, account.account_id), "get")
        if roll < 0.55:
            if self.operation_ids and rng.random() < 0.3:  # a retry of an earlier one
                op_id, body = self.operation_ids[rng.randrange(len(self.operation_ids))]
                return Probe(
                    peer=peer, command=AMR_CMD, body=body, label="credit-retry", value=op_id
                )
            op_id = f"op-{self.next_serial()}"
            value = self.amr(
                peer,
                3,
                account.account_id,
                Amount=self.pick([10_000, 500_000, 2 * EUR, 20 * EUR]),
                **{"Operation-Id": op_id},
            )
            probe = self.probe(peer, AMR_CMD, value, "credit")
            self.operation_ids.append((op_id, probe.body))
            return probe
        if roll < 0.75:
            value = self.amr(
                peer, 4, account.account_id, Amount=self.pick([10_000, 300_000, 3 * EUR])
            )
            return self.probe(peer, AMR_CMD, value, "debit-admin")
        if roll < 0.85 and self.operation_ids:  # an Operation-Id reused for something else
            op_id, _ = self.operation_ids[rng.randrange(len(self.operation_ids))]
            value = self.amr(peer, 3, account.account_id, Amount=7, **{"Operation-Id": op_id})
            return self.probe(peer, AMR_CMD, value, "credit-reused-id")
        status = 0 if account.status != 0 or rng.random() < 0.6 else self.pick([1, 2])

        def set_status(probe: Probe, answer: Answer) -> None:
            if answer.result_code == 2001:
                account.status = status

        value = self.amr(peer, 5, account.account_id, **{"Account-Status": status})
        return self.probe(peer, AMR_CMD, value, "set-status", on_answer=set_status)

    def duplicate_expected(self, original: Probe) -> bool:
        """Whether the server must still answer `original`'s (Origin-Host, End-to-End-Id) from
        its cache: it processed and journaled it, no crash lost it, and the window is open."""
        return (
            original.handled
            and original.lsn is not None
            and not original.lost
            and original.answer is not None
            and self.now_ms() - original.sent_ms < DUPLICATE_WINDOW_MS - WINDOW_MARGIN_MS
        )

    def retransmission(self) -> Probe | None:
        """A request sent again, T flag, same End-to-End-Id: the first answer, no change."""
        if not self.history:
            return None
        original = self.history[self.rng.randrange(len(self.history))]
        expect = None
        if self.duplicate_expected(original):
            expect = Expect(finding="duplicate", same_as=original.answer, unchanged=True)
        return Probe(
            peer=original.peer,
            command=original.command,
            body=original.body,
            label=f"retransmit:{original.label}",
            e2e=original.e2e,
            retransmit=True,
            expect=expect,
            value=original.value,
        )

    def repeat_last(self) -> Probe | None:
        """A session's last request again under a new End-to-End-Id (WIRE.md 6: the same
        (Session-Id, CC-Request-Number) gets the same answer)."""
        candidates = [s for s in self.sessions.values() if not s.busy and s.last is not None]
        if not candidates:
            return None
        s = self.pick(candidates)
        last = s.last
        assert last is not None
        expect = None
        number = last.value.get("CC-Request-Number") if isinstance(last.value, dict) else None
        if (
            self.duplicate_expected(last)
            and last.result_code == 2001
            and self.server_number(s.sid) == number
        ):
            expect = Expect(finding="duplicate", same_as=last.answer, unchanged=True)
        return Probe(
            peer=last.peer,
            command=last.command,
            body=last.body,
            label=f"repeat:{last.label}",
            expect=expect,
            value=last.value,
        )

    def resync(self) -> None:
        """Clients whose sessions hostile requests moved on (or the server closed) learn it."""
        for s in list(self.sessions.values()):
            if s.busy or not s.open:
                continue
            number = self.server_number(s.sid)
            if number is None:
                del self.sessions[s.sid]
                self.closed.append(s.sid)
            elif number != s.number:
                s.number = number
                s.last = None

    def server_request(self, kind: str, sid: str) -> None:
        """RAR or ASR for a session: the client re-authorises or terminates it next."""
        s = self.sessions.get(sid)
        if s is None:
            return
        if kind == "rar":
            s.reauth = True
        else:
            s.abort = True

    # --- hostile traffic -----------------------------------------------------------------------

    def hostile_probe(self) -> Probe | None:
        if not self.hostile:
            return None
        cls = self.pick(self.hostile)
        make: Callable[[], Probe | None] = getattr(self, f"h_{cls}")
        probe = make()
        if probe is not None:
            probe.cls = cls
        return probe

    def valid_ccr(self, peer: str | None = None) -> dict[str, Any]:
        """A well-formed request to mutate: an INITIAL, UPDATE or EVENT."""
        account = self.account()
        subscriber = account.subscriber if account is not None else "4917000000000"
        idle = self.idle_sessions()
        if idle and self.rng.random() < 0.5:
            s = self.pick(idle)
            return self.ccr(
                s.peer,
                s.sid,
                2,
                s.number + 1,
                service=s.service,
                msccs=self.usage_msccs(s, final=False),
            )
        peer = peer or self.pick(self.peers[:3])
        if self.rng.random() < 0.5:
            return self.ccr(
                peer,
                f"{peer};{self.next_serial()};h",
                4,
                0,
                service=SMS,
                subscriber=subscriber,
                action=0,
                msccs=[
                    {"Rating-Group": 30, "Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
                ],
            )
        return self.ccr(
            peer,
            f"{peer};{self.next_serial()};h",
            1,
            0,
            service=DATA,
            subscriber=subscriber,
            msccs=[self.mscc_ask(10)],
        )

    def h_wire(self) -> Probe | None:
        rng = self.rng
        account = self.account()
        command = CCR_CMD
        if account is not None and rng.random() < 0.25:
            value: Any = self.amr(
                self.peers[3],
                self.pick([1, 2, 3, 4, 5]),
                account.account_id,
                Amount=100,
                **{"Operation-Id": f"w-{self.next_serial()}", "Account-Status": 0},
            )
            command = AMR_CMD
        else:
            value = self.valid_ccr()
        peer = value["Origin-Host"]
        how = self.pick(
            [
                "wrong",
                "wrong-inner",
                "missing",
                "unknown",
                "shape",
                "truncate",
                "trailing",
                "repeat",
                "utf8",
                "header",
            ]
        )
        if how == "wrong":
            key = self.pick(sorted(value))
            value[key] = self.pick(WRONG_VALUES)
            if key == "Origin-Host" and isinstance(value[key], str):
                value[key] = None  # (another peer's name is the class `ownership`)
        elif how == "wrong-inner" and isinstance(
            value.get("Multiple-Services-Credit-Control"), list
        ):
            mscc = value["Multiple-Services-Credit-Control"][0]
            key = self.pick(sorted(mscc))
            mscc[key] = self.pick(WRONG_VALUES)
            if (
                rng.random() < 0.5
                and "Used-Service-Unit" in mscc
                and isinstance(mscc["Used-Service-Unit"], list)
            ):
                mscc["Used-Service-Unit"] = [{"CC-Total-Octets": self.pick(WRONG_VALUES)}]
        elif how == "missing":
            del value[self.pick(sorted(value))]
        elif how == "unknown":
            value[self.pick(["X-Unknown", "Cost-Information", "Result-Code", "session-id"])] = (
                self.pick(WRONG_VALUES)
            )
        elif how == "shape":
            value = self.pick([[], 0, "map", None, [value], b"\x80"])
        body = pack(value)
        if how == "truncate" and len(body) > 1:
            body = body[: rng.randrange(1, len(body))]
        elif how == "trailing":
            body += self.pick([b"\x00", b"\xc0", pack({"a": 1}), b"\xc1"])
        elif how == "repeat":
            items = list(value.items())
            key = self.pick([k for k, _ in items])
            again = self.pick(WRONG_VALUES)
            if key == "Origin-Host" and isinstance(again, str):
                again = None  # (another peer's name is the class `ownership`)
            items.append((key, again))
            value = Pairs(tuple(items))
            body = pack(value)
        elif how == "utf8":
            key = self.pick(["Session-Id", "Origin-Realm", "Service-Context-Id"])
            value[key] = bad_str(self.pick([b"\xff\xfe", b"ok\xc3", b"\xed\xa0\x80"]))
            body = pack(value)
        probe = Probe(peer=peer, command=command, body=body, label=f"wire:{how}", value=value)
        if how == "header":  # a valid body under a header the connection must refuse
            what = self.pick(["reserved", "error-bit", "command", "application"])
            if what == "reserved":
                probe.header_flags = self.pick([0x01, 0x02, 0x04, 0x08, 0x0F])
            elif what == "error-bit":
                probe.header_flags = 0x20
            elif what == "command":
                probe.command = self.pick([999, 258, 274, 0xFFFFFF])
            else:
                probe.app = self.pick([0, 3, 0xFFFFFFFF, 4 if command == AMR_CMD else 0x4F435341])
            probe.label = f"wire:header-{what}"
        return probe

    def h_sequence(self) -> Probe | None:
        rng = self.rng
        how = self.pick(["reuse-e2e", "number", "initial-again", "after-close", "e2e-edge"])
        if how == "reuse-e2e" and self.history:
            original = self.history[rng.randrange(len(self.history))]
            other = self.valid_ccr(original.peer)
            other["Origin-Host"] = original.peer
            expect = None
            if self.duplicate_expected(original):
                expect = Expect(finding="duplicate", same_as=original.answer, unchanged=True)
            return self.probe(
                original.peer, CCR_CMD, other, "sequence:reuse-e2e", e2e=original.e2e, expect=expect
            )
        if how == "number":
            candidates = [s for s in self.idle_sessions() if s.open]
            if candidates:
                s = self.pick(candidates)
                held = self.server_number(s.sid)
                base = held if held is not None else s.number
                number = self.pick([base + 2, base + 100, max(base - 1, 0), U32, 0])
                if number in (base, base + 1):
                    number = base + 2
                kind = self.pick([2, 3])
                value = self.ccr(
                    s.peer,
                    s.sid,
                    kind,
                    number,
                    service=s.service,
                    msccs=self.usage_msccs(s, final=kind == 3),
                )
                # out of sequence and not the last one again: refused, nothing changes
                expect = Expect(
                    finding="sequence",
                    codes=frozenset({5004}),
                    unchanged=True,
                    failed_avp="CC-Request-Number",
                )
                return self.probe(
                    s.peer,
                    CCR_CMD,
                    value,
                    "sequence:number",
                    expect=expect if held is not None else None,
                )
        if how == "initial-again":
            candidates = [s for s in self.idle_sessions() if s.open]
            if candidates:
                s = self.pick(candidates)
                account = self.account()
                value = self.ccr(
                    s.peer,
                    s.sid,
                    1,
                    self.pick([0, s.number + 1]),
                    service=s.service,
                    subscriber=account.subscriber if account else s.subscriber,
                    msccs=[self.mscc_ask(SERVICE_RGS[s.service][0])],
                )
                held = self.server_number(s.sid) is not None
                expect = Expect(finding="sequence", unchanged=True) if held else None
                return self.probe(s.peer, CCR_CMD, value, "sequence:initial-again", expect=expect)
        if how == "after-close" and self.closed:
            sid = self.closed[rng.randrange(len(self.closed))]
            peer = sid.split(";", 1)[0]
            kind = self.pick([2, 3])
            value = self.ccr(
                peer,
                sid,
                kind,
                rng.randint(1, 6),
                service=DATA,
                msccs=[{"Rating-Group": 10, "Used-Service-Unit": [{"CC-Total-Octets": MiB}]}],
            )
            held = self.server_number(sid) is not None
            expect = None if held else Expect(finding="sequence", unchanged=True)
            return self.probe(peer, CCR_CMD, value, "sequence:after-close", expect=expect)
        value = self.valid_ccr()
        return self.probe(
            value["Origin-Host"], CCR_CMD, value, "sequence:e2e-edge", e2e=self.pick([0, U32])
        )

    def usu_units(self) -> dict[str, Any]:
        key = self.pick(
            [
                "CC-Total-Octets",
                "CC-Input-Octets",
                "CC-Output-Octets",
                "CC-Time",
                "CC-Service-Specific-Units",
            ]
        )
        bound = BOUNDS_U32 if key == "CC-Time" else BOUNDS_U64
        usu: dict[str, Any] = {key: self.pick(bound)}
        if self.rng.random() < 0.3:
            usu["CC-Input-Octets"] = self.pick(BOUNDS_U64)
            usu["CC-Output-Octets"] = self.pick(BOUNDS_U64)
        return usu

    def h_usage(self) -> Probe | None:
        rng = self.rng
        candidates = [s for s in self.idle_sessions() if s.open]
        if candidates and rng.random() < 0.7:
            s = self.pick(candidates)
            s.number += 1
            s.busy = True
            msccs = []
            for rg in SERVICE_RGS[s.service] + ((99,) if rng.random() < 0.1 else ()):
                if rng.random() < 0.5 and rg != SERVICE_RGS[s.service][0]:
                    continue
                mscc: dict[str, Any] = {
                    "Rating-Group": rg,
                    "Used-Service-Unit": [
                        self.usu_units() for _ in range(self.pick([1, 1, 2, 3, 40]))
                    ],
                }
                if rng.random() < 0.5:
                    mscc["Requested-Service-Unit"] = self.usu_units()
                msccs.append(mscc)
            kind = 3 if rng.random() < 0.3 else 2
            value = self.ccr(
                s.peer,
                s.sid,
                kind,
                s.number,
                service=s.service,
                msccs=msccs,
                aoc=self.pick([None, 1, 2]),
            )
            probe = self.probe(
                s.peer,
                CCR_CMD,
                value,
                "usage:report",
                on_answer=self.session_answer,
                expect=units_expect(msccs),
            )
            s.last = probe
            return probe
        account = self.account()
        if account is None:
            return None
        service = self.pick([DATA, SMS, VOICE])
        rg = SERVICE_RGS[service][0]
        peer = self.session_peer(service)
        key = UNIT_KEY[rg]
        ask = {key: self.pick(BOUNDS_U32 if key == "CC-Time" else BOUNDS_U64)}
        if rng.random() < 0.5:
            value = self.ccr(
                peer,
                f"{peer};{self.next_serial()};e",
                4,
                0,
                service=service,
                subscriber=account.subscriber,
                action=self.pick([0, 1, 2, 3]),
                msccs=[{"Rating-Group": rg, "Requested-Service-Unit": ask}],
                aoc=self.pick([None, 1]),
            )
            return self.probe(peer, CCR_CMD, value, "usage:event", expect=units_expect(value[MSCC]))
        sid = f"{peer};{self.next_serial()};s"
        value = self.ccr(
            peer,
            sid,
            1,
            0,
            service=service,
            subscriber=account.subscriber,
            msccs=[{"Rating-Group": rg, "Requested-Service-Unit": ask}],
            aoc=self.pick([None, 1]),
        )
        session = ClientSession(sid=sid, peer=peer, service=service, subscriber=account.subscriber)
        self.sessions[sid] = session
        probe = self.probe(
            peer,
            CCR_CMD,
            value,
            "usage:initial",
            on_answer=self.session_answer,
            expect=units_expect(value[MSCC]),
        )
        session.last = probe
        return probe

    def h_amounts(self) -> Probe | None:
        rng = self.rng
        peer = self.peers[3]
        roll = rng.random()
        if roll < 0.3 or not self.accounts:
            amount, limit = self.pick(BOUNDS_I64), self.pick(BOUNDS_I64)
            probe = self.create_account(
                Amount=amount,
                **{"Credit-Limit": limit, "Currency-Code": self.pick([978, 0, U32])},
            )
            # outside one operation (docs/protocol.md, limits): 5004, no change
            if not -MAX_AMOUNT <= amount <= MAX_AMOUNT or not 0 <= limit <= MAX_AMOUNT:
                probe.expect = Expect(finding="amounts", codes=frozenset({5004}), unchanged=True)
            return probe
        account = self.account()
        assert account is not None
        op = self.pick([3, 3, 4])
        amount = self.pick(BOUNDS_I64)
        keys: dict[str, Any] = {"Amount": amount}
        if rng.random() < 0.5:
            keys["Operation-Id"] = f"big-{self.next_serial()}"
        value = self.amr(peer, op, account.account_id, **keys)
        expect = None
        if not 1 <= amount <= MAX_AMOUNT:
            expect = out_of_domain("amounts", "Amount")
        label = "amounts:credit" if op == 3 else "amounts:debit"
        return self.probe(peer, AMR_CMD, value, label, expect=expect)

    def h_time(self) -> Probe | None:
        account = self.account()
        if account is None:
            return None
        rng = self.rng
        peer = self.peers[2]
        now_s = self.now_ms() // 1000
        at = self.pick(
            [
                0,
                1,
                now_s - 10 * 365 * 86400,
                now_s + 10 * 365 * 86400,
                (1 << 31) - 1,
                1 << 31,
                U32,
                1 << 32,
                1 << 33,
                1 << 40,
                1 << 62,
                I64,
            ]
        )
        value = self.ccr(
            peer,
            f"{peer};{self.next_serial()};t",
            self.pick([4, 4, 4, 1]),
            0,
            service=SMS,
            subscriber=account.subscriber,
            action=self.pick([0, 1, 2, 3]),
            event_ts=at,
            msccs=[
                {
                    "Rating-Group": 30,
                    "Requested-Service-Unit": {"CC-Service-Specific-Units": rng.randint(1, 2)},
                }
            ],
        )
        expect = None
        if not now_s - EVENT_TIMESTAMP_PAST_S <= at <= now_s + EVENT_TIMESTAMP_FUTURE_S:
            # outside the window around the server's clock (docs/protocol.md, limits)
            expect = out_of_domain("time", "Event-Timestamp")
        return self.probe(peer, CCR_CMD, value, "time:event-timestamp", expect=expect)

    def long_text(self) -> str:
        n = self.pick([0, 1, 255, 256, 257, 1000, 10_000, 60_000])
        return self.pick(["x", "é", "\u0000", "😀", ";"]) * n

    def h_strings(self) -> Probe | None:
        how = self.pick(["session-id", "account-id", "operation-id", "subscriber", "context"])
        account = self.account()
        subscriber = account.subscriber if account else "4917000000000"
        if how == "session-id":
            peer = self.pick(self.peers[:3])
            sid = peer + ";" + self.long_text()
            value = self.ccr(
                peer,
                sid,
                self.pick([1, 4]),
                0,
                service=SMS,
                subscriber=subscriber,
                action=0,
                msccs=[
                    {"Rating-Group": 30, "Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
                ],
            )
            expect = None
            if len(sid) > MAX_SESSION_ID_LENGTH:
                expect = out_of_domain("strings", "Session-Id")
            return self.probe(peer, CCR_CMD, value, "strings:session-id", expect=expect)
        if how in ("account-id", "operation-id"):
            peer = self.peers[3]
            text = self.long_text()
            if how == "account-id":
                value = self.amr(
                    peer,
                    self.pick([1, 2, 3]),
                    text,
                    Amount=100,
                    **{
                        "Subscription-Id": [
                            {
                                "Subscription-Id-Type": 0,
                                "Subscription-Id-Data": f"49{self.next_serial()}",
                            }
                        ]
                    },
                )
            else:
                target = account.account_id if account else "acct-0001"
                value = self.amr(peer, 3, target, Amount=1, **{"Operation-Id": text})
            limit = MAX_ACCOUNT_ID_LENGTH if how == "account-id" else MAX_OPERATION_ID_LENGTH
            expect = None
            if not 1 <= len(text) <= limit:
                expect = out_of_domain(
                    "strings", "Account-Id" if how == "account-id" else "Operation-Id"
                )
            return self.probe(peer, AMR_CMD, value, f"strings:{how}", expect=expect)
        if how == "subscriber":
            peer = self.peers[3]
            text = self.long_text()
            value = self.amr(
                peer,
                1,
                f"acct-s{self.next_serial()}",
                Amount=EUR,
                **{
                    "Subscription-Id": [
                        {
                            "Subscription-Id-Type": self.pick([0, 1, 4]),
                            "Subscription-Id-Data": text,
                        }
                    ]
                },
            )
            expect = None
            if not 1 <= len(text) <= MAX_SUBSCRIPTION_DATA_LENGTH:
                expect = out_of_domain("strings", "Subscription-Id-Data")
            return self.probe(peer, AMR_CMD, value, "strings:subscriber", expect=expect)
        if how == "context":
            peer = self.peers[2]
            text = self.long_text()
            value = self.ccr(
                peer,
                f"{peer};{self.next_serial()};c",
                self.pick([1, 4]),
                0,
                service=text,
                subscriber=subscriber,
                action=0,
                msccs=[
                    {"Rating-Group": 30, "Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
                ],
            )
            expect = None
            if len(text) > MAX_TEXT_LENGTH:
                expect = out_of_domain("strings", "Service-Context-Id")
            return self.probe(peer, CCR_CMD, value, "strings:context", expect=expect)
        raise AssertionError(how)

    def h_peers(self) -> Probe | None:
        """A peer whose Origin-Host is long or odd (its CER too), sending an event, or a small
        request the connection refuses (the refusal is logged with the peer's name)."""
        rng = self.rng
        account = self.account()
        subscriber = account.subscriber if account else "4917000000000"
        if self.odd_peers and rng.random() < 0.6:
            origin = self.pick(self.odd_peers)
        else:
            origin = "h" + self.long_text()[: self.pick([10, 1000, 20_000, 30_000])]
            if rng.random() < 0.5:
                origin = self.pick(["", " ", "a;b", "\u00fc.sim.test", "h\u0000"])
            self.odd_peers.append(origin)
        value = self.ccr(
            origin,
            f"{origin};{self.next_serial()}",
            4,
            0,
            service=SMS,
            subscriber=subscriber,
            action=self.pick([0, 2, 3]),
            msccs=[
                {"Rating-Group": 30, "Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
            ],
        )
        if rng.random() < 0.4:  # a small request the connection refuses (and logs)
            return self.probe(
                origin, CCR_CMD, self.pick([{}, [], {"Session-Id": 1}]), "peers:refused"
            )
        return self.probe(origin, CCR_CMD, value, "peers:event")

    def odd_map(self) -> tuple[Any, bool]:
        """A `Service-Information`, and whether it is outside the domain docs/protocol.md
        gives opaque maps (keys that are not strings, floats, extension types, deeper than
        `MAX_OPAQUE_DEPTH`, more than `MAX_OPAQUE_ITEMS` items)."""
        rng = self.rng
        how = self.pick(["keys", "deep", "wide", "values", "nested-list"])
        if how == "keys":
            return {
                "ok": Pairs(
                    (
                        (None, 1),
                        (1, "int"),
                        (b"bin", 2),
                        (1.5, 3),
                        (True, 4),
                        ("dup", 1),
                        ("dup", 2),
                    )
                )
            }, True
        if how == "deep":
            node: Any = "leaf"
            for _ in range(self.pick([10, 100, 500, 1000, 3000])):
                node = {"d": node} if rng.random() < 0.7 else [node]
            return {"deep": node}, True
        if how == "wide":
            n = self.pick([100, 1000, 3000])
            return {f"k{i}": i for i in range(n)}, n + 1 > MAX_OPAQUE_ITEMS
        if how == "values":
            return {
                "nan": float("nan"),
                "inf": float("-inf"),
                "big": U64,
                "neg": -(1 << 63),
                "ext": Ext(5, b"\x01"),
                "bin": b"\xff" * 10,
            }, True
        return {"list": [[{"a": [None, {}]}] * 3] * 3}, False

    def h_maps(self) -> Probe | None:
        account = self.account()
        if account is None:
            return None
        rng = self.rng
        info, outside = self.odd_map()
        # outside the opaque maps' domain: 5004 (3009 deeper than a body may nest), no change
        expect = (
            Expect(finding="maps", codes=frozenset({3009, 5004}), unchanged=True)
            if outside
            else None
        )
        if rng.random() < 0.4:  # on a session: copied into its CDR when it closes
            peer = self.peers[0]
            sid = f"{peer};{self.next_serial()};m"
            value = self.ccr(
                peer,
                sid,
                1,
                0,
                service=DATA,
                subscriber=account.subscriber,
                msccs=[self.mscc_ask(10)],
                info=info,
            )
            session = ClientSession(sid=sid, peer=peer, service=DATA, subscriber=account.subscriber)
            self.sessions[sid] = session
            probe = self.probe(
                peer,
                CCR_CMD,
                value,
                "maps:session",
                on_answer=self.session_answer,
                expect=expect,
            )
            session.last = probe
            return probe
        peer = self.peers[2]
        value = self.ccr(
            peer,
            f"{peer};{self.next_serial()};m",
            4,
            0,
            service=SMS,
            subscriber=account.subscriber,
            action=self.pick([0, 1, 2, 3]),
            msccs=[
                {"Rating-Group": 30, "Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
            ],
            info=info,
        )
        return self.probe(peer, CCR_CMD, value, "maps:event", expect=expect)

    def h_events(self) -> Probe | None:
        """An EVENT again under its Session-Id with a new End-to-End-Id: a duplicate."""
        candidates = [
            p
            for p in self.events
            if p.result_code is not None
            and self.duplicate_expected(p)
            and isinstance(p.value, dict)
        ]
        if not candidates:
            return self.event()
        original = self.pick(candidates)
        value = dict(original.value)
        if self.rng.random() < 0.3:
            value["AoC-Request-Type"] = 1
        return self.probe(
            original.peer,
            CCR_CMD,
            value,
            "events:again",
            expect=Expect(finding="events", same_as=original.answer, unchanged=True),
        )

    def h_refunds(self) -> Probe | None:
        """A refund beyond what DIRECT_DEBITING took from that subscriber for that group."""
        account = self.account()
        if account is None:
            return None
        rng = self.rng
        rg = self.pick([30, 30, 40, 10])
        service = {30: SMS, 40: VOICE, 10: DATA}[rg]
        taken = self.refundable_units(account.subscriber, rg)
        units = taken + self.pick([1, 10, 1000, 10**6, 10**13])
        peer = self.peers[2]
        value = self.ccr(
            peer,
            f"{peer};{self.next_serial()};r",
            4,
            0,
            service=service,
            subscriber=account.subscriber,
            action=1,
            msccs=[{"Rating-Group": rg, "Requested-Service-Unit": {UNIT_KEY[rg]: units}}],
        )
        del rng
        return self.probe(
            peer,
            CCR_CMD,
            value,
            "refunds:beyond",
            expect=Expect(
                finding="refunds",
                codes=frozenset({5004}),
                unchanged=True,
                failed_avp="Requested-Service-Unit",
            ),
        )

    def h_ownership(self) -> Probe | None:
        rng = self.rng
        how = self.pick(["foreign-update", "foreign-prefix", "origin-host"])
        if how == "foreign-update":
            candidates = [s for s in self.idle_sessions() if s.open]
            if candidates:
                s = self.pick(candidates)
                other = self.pick([p for p in self.peers[:3] if p != s.peer])
                kind = self.pick([2, 3])
                value = self.ccr(
                    other,
                    s.sid,
                    kind,
                    s.number + 1,
                    service=s.service,
                    msccs=self.usage_msccs(s, final=kind == 3),
                )
                # 5002 whoever's the session is, unless the report itself lies outside the
                # domain (a session's usage may be hostile): then 5004 at the door, which tells
                # nothing of the session either (found by seed 5451)
                codes = frozenset({5002}) if _decodes(CCR_CMD, value) else frozenset({5004})
                return self.probe(
                    other,
                    CCR_CMD,
                    value,
                    "ownership:foreign-session",
                    expect=Expect(finding="ownership", codes=codes, unchanged=True),
                )
        account = self.account()
        if account is None:
            return None
        if how == "origin-host" and self.history:
            # a request carrying another peer's Origin-Host, and that peer's End-to-End-Id
            victim = self.history[rng.randrange(len(self.history))]
            sender = self.pick([p for p in self.peers if p != victim.peer])
            value = self.valid_ccr(victim.peer)
            value["Origin-Host"] = victim.peer
            return self.probe(
                sender,
                CCR_CMD,
                value,
                "ownership:origin-host",
                e2e=victim.e2e,
                expect=Expect(
                    finding="ownership",
                    codes=frozenset({5004}),
                    unchanged=True,
                    failed_avp="Origin-Host",
                ),
            )
        sender = self.pick(self.peers[:3])
        owner = self.pick([p for p in self.peers if p != sender])
        value = self.ccr(
            sender,
            f"{owner};{self.next_serial()};x",
            self.pick([1, 4]),
            0,
            service=SMS,
            subscriber=account.subscriber,
            action=0,
            msccs=[
                {"Rating-Group": 30, "Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
            ],
        )
        return self.probe(
            sender,
            CCR_CMD,
            value,
            "ownership:foreign-prefix",
            expect=Expect(
                finding="ownership",
                codes=frozenset({5004}),
                unchanged=True,
                failed_avp="Session-Id",
            ),
        )


__all__ = ["HOSTILE", "REFUSALS", "Expect", "Probe", "Workload"]


def _decodes(command: int, value: Any) -> bool:
    """Whether the server's codec takes this request body (every value in its domain)."""
    try:
        decode_body(command, True, pack(value))
    except ProtocolError:
        return False
    return True
