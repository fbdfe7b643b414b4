"""What shared group packages cost the charging core (docs/benchmarks.md, *Shared group
packages*), in process, on the demo catalog (its package "family"):

    .venv/bin/python -m bench.groups [--accounts 20000] [--per-group 4]

1. A data session (INITIAL with a grant, UPDATE with usage and a new grant, TERMINATION with
   usage) of an account in no group, then of a group member (reserved on and charged to the
   group, under the member cap, usage recorded per service): time per session, and the ratio
   measured in the same run.
2. The end of a period for every group at one instant: the ticks that take the fees and
   apportion them (one apportionment record per group, at most `MAX_CLOSES_PER_TICK` groups a
   tick): time per group and the longest tick.

Prints a markdown report. Not a test: nothing is asserted but that the requests succeed.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from ocs.core.charging import ChargingCore
from ocs.core.groups import MAX_CLOSES_PER_TICK
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import demo_catalog_text
from protocol.codes import AccountOperation, CCRequestType, SubscriptionIdType
from protocol.messages import AMR, CCR, MsccRequest, ServiceUnit, SubscriptionId, UsedServiceUnit

T0 = 1_793_606_400_000  # Monday 2026-11-02 10:00 Paris (off-peak and peak do not matter)
UPF = "upf1.bench.local"
ADMIN = "admin.bench.local"
MiB = 1 << 20
EUR = 1_000_000


class Bench:
    def __init__(self) -> None:
        self.core = ChargingCore(Ledger(), demo_catalog_text())
        self.e2e = 0
        self.now = T0

    def amr(self, op: AccountOperation, account: str, **kw: object) -> None:
        self.e2e += 1
        message = AMR(
            origin_host=ADMIN,
            origin_realm="bench.local",
            account_operation=op,
            account_id=account,
            **kw,  # type: ignore[arg-type]
        )
        answer = self.core.handle_amr(self.now, ADMIN, self.e2e, message).answer
        assert answer.result_code == 2001, answer

    def ccr(self, sid: str, kind: CCRequestType, number: int, msisdn: str | None) -> None:
        self.e2e += 1
        used = (UsedServiceUnit(cc_total_octets=MiB),) if number else None
        ask = ServiceUnit(cc_total_octets=MiB) if kind is not CCRequestType.TERMINATION else None
        message = CCR(
            session_id=sid,
            origin_host=UPF,
            origin_realm="bench.local",
            destination_realm="bench.local",
            auth_application_id=4,
            service_context_id="32251@3gpp.org",
            cc_request_type=kind,
            cc_request_number=number,
            subscription_id=(
                SubscriptionId(
                    subscription_id_type=SubscriptionIdType.END_USER_E164,
                    subscription_id_data=msisdn,
                ),
            )
            if msisdn is not None
            else None,
            multiple_services_credit_control=(
                MsccRequest(rating_group=10, requested_service_unit=ask, used_service_unit=used),
            ),
        )
        answer = self.core.handle_ccr(self.now, UPF, self.e2e, message).answer
        assert answer.result_code == 2001, answer

    def session(self, n: int, msisdn: str) -> None:
        sid = f"{UPF};s{n}"
        self.ccr(sid, CCRequestType.INITIAL, 0, msisdn)
        self.ccr(sid, CCRequestType.UPDATE, 1, None)
        self.ccr(sid, CCRequestType.TERMINATION, 2, None)
        self.now += 1


def msisdn(i: int) -> str:
    return f"49170{i:08d}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--per-group", type=int, default=4)
    args = parser.parse_args()
    n, per = args.accounts, args.per_group
    b = Bench()
    for i in range(2 * n):
        b.amr(
            AccountOperation.CREATE,
            f"a{i}",
            amount=100 * EUR,
            subscription_id=(
                SubscriptionId(
                    subscription_id_type=SubscriptionIdType.END_USER_E164,
                    subscription_id_data=msisdn(i),
                ),
            ),
        )
    groups = n // per
    for g in range(groups):
        b.amr(AccountOperation.CREATE, f"g{g}", amount=1_000 * EUR)
        for k in range(per):
            member = f"a{n + g * per + k}"
            b.amr(
                AccountOperation.GROUP_JOIN,
                member,
                group_account_id=f"g{g}",
                package_name="family",
            )
    b.core.take_cdrs()
    count = groups * per
    plain = range(count)
    members = range(n, n + count)
    serial = 0

    def block(accounts: range) -> float:
        nonlocal serial
        started = time.perf_counter()
        for i in accounts:
            serial += 1
            b.session(serial, msisdn(i))
        b.core.take_cdrs()
        return (time.perf_counter() - started) / len(accounts)

    block(plain)  # warm-up
    runs: dict[str, list[float]] = {"no group": [], "group member": []}
    for _ in range(2):
        runs["no group"].append(block(plain))
        runs["group member"].append(block(members))
    timings = {label: sum(v) / len(v) for label, v in runs.items()}
    end = b.core.groups.due_ms()
    assert end is not None
    ticks: list[float] = []
    at = end
    while b.core.due(at):  # as the edge ticks: once a second while something is due
        started = time.perf_counter()
        b.core.tick(at)
        ticks.append(time.perf_counter() - started)
        at += 1000
    tick_s = sum(ticks)
    records = len(b.core.take_cdrs())
    assert records == groups, records
    module = str(getattr(sys.modules["ocs.core.charging"], "__file__", ""))
    build = "compiled" if module.endswith((".so", ".pyd")) else "pure"
    print(
        f"## bench.groups ({platform.python_implementation()} {platform.python_version()}, {build})"
    )
    print()
    print(
        f"{count} data sessions (INITIAL + UPDATE + TERMINATION, RG 10) per block; blocks "
        "alternate, twice each, after a warm-up block"
    )
    print()
    print("| sessions of | µs per session |")
    print("|---|---|")
    for label, seconds in timings.items():
        print(f"| {label} | {seconds * 1e6:.1f} |")
    print()
    print(f"member / no group: **{timings['group member'] / timings['no group']:.2f}x**")
    print()
    print(
        f"period end: {groups} groups of {per} members ending at one instant, fee and "
        f"apportionment: {tick_s * 1e3:.1f} ms in {len(ticks)} ticks (at most "
        f"{MAX_CLOSES_PER_TICK} groups a tick), {tick_s / groups * 1e6:.1f} µs per group, "
        f"median tick {sorted(ticks)[len(ticks) // 2] * 1e3:.1f} ms, the longest "
        f"{max(ticks) * 1e3:.1f} ms (the first: it also evicts the whole duplicate cache, "
        "a month having passed)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
