"""What usage counters cost (docs/charging.md, *Usage counters*): on the per-request path and
in memory.

    .venv/bin/python -m bench.counters [--accounts 2000] [--rounds 10] [--memory 100000]

1. CPU: two in-process charging cores side by side, one on the demo catalog without its
   `[[counters]]` (the legacy `[account] usage_thresholds` only), one on the demo catalog as
   shipped (two counters, `data-daily` and `spend-monthly`, both counting RG 10). Each has
   `--accounts` accounts with one open data session; then `--rounds` rounds of one UPDATE per
   session (6 MiB of RG 10 used, quota asked again), the two cores taking turns round by
   round so that both see the same machine. Thread CPU time per UPDATE (`handle_ccr`, the
   request already decoded) and the ratio.
2. Memory: `UsageCounters` of `--memory` accounts that each used both demo counters
   (tracemalloc, bytes per account).

Prints a markdown report. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from ocs.core.charging import ChargingCore
from ocs.core.counters import UsageCounters
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import demo_catalog_text
from protocol.codes import AccountOperation, CCRequestType, SubscriptionIdType
from protocol.messages import AMR, CCR, MsccRequest, ServiceUnit, SubscriptionId, UsedServiceUnit
from rating import parse_catalog

T0 = 1_767_618_000_000  # Monday 2026-01-05 14:00 Paris
UPF = "upf1.bench.local"
MiB = 1 << 20
DEMO = demo_catalog_text()
WITHOUT = DEMO[: DEMO.index("# --- usage counters across sessions")]


def _sub(i: int) -> tuple[SubscriptionId, ...]:
    return (
        SubscriptionId(
            subscription_id_type=SubscriptionIdType.END_USER_E164,
            subscription_id_data=f"4917{i:08d}",
        ),
    )


def _ccr(i: int, kind: CCRequestType, number: int, mscc: MsccRequest) -> CCR:
    return CCR(
        session_id=f"{UPF};{i}",
        origin_host=UPF,
        origin_realm="bench.local",
        destination_realm="ocs.local",
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=kind,
        cc_request_number=number,
        subscription_id=_sub(i) if kind is CCRequestType.INITIAL else None,
        multiple_services_credit_control=(mscc,),
    )


def _core(catalog: str, accounts: int) -> ChargingCore:
    core = ChargingCore(Ledger(), catalog)
    for e2e, i in enumerate(range(accounts), start=1):
        amr = AMR(
            origin_host="admin.bench.local",
            origin_realm="bench.local",
            account_operation=AccountOperation.CREATE,
            account_id=f"a{i}",
            subscription_id=_sub(i),
            amount=10**12,
        )
        assert core.handle_amr(T0, "admin.bench.local", e2e, amr).answer.result_code == 2001
        ask = MsccRequest(rating_group=10, requested_service_unit=ServiceUnit())
        opened = core.handle_ccr(T0, UPF, e2e, _ccr(i, CCRequestType.INITIAL, 0, ask))
        assert opened.answer.result_code == 2001
    return core


def _round(core: ChargingCore, accounts: int, number: int, e2e: int) -> int:
    """One UPDATE per session; thread CPU ns."""
    report = MsccRequest(
        rating_group=10,
        requested_service_unit=ServiceUnit(),
        used_service_unit=(UsedServiceUnit(cc_total_octets=6 * MiB),),
    )
    requests = [_ccr(i, CCRequestType.UPDATE, number, report) for i in range(accounts)]
    now = T0 + number * 1000
    started = time.thread_time_ns()
    for i, request in enumerate(requests):
        core.handle_ccr(now, UPF, e2e + i, request)
    spent = time.thread_time_ns() - started
    core.take_actions()
    core.take_cdrs()
    return spent


def cpu(accounts: int, rounds: int) -> None:
    cores = {
        "without counters": _core(WITHOUT, accounts),
        "demo (2 counters)": _core(DEMO, accounts),
    }
    spent = dict.fromkeys(cores, 0)
    e2e = 10 * accounts
    gc.collect()
    gc.disable()
    try:
        for number in range(1, rounds + 1):
            for name, core in cores.items():
                e2e += accounts
                spent[name] += _round(core, accounts, number, e2e)
    finally:
        gc.enable()
    updates = accounts * rounds
    print(f"## CPU per UPDATE ({accounts} sessions x {rounds} rounds, interleaved)\n")
    print("| catalog | µs per UPDATE |")
    print("|---|---|")
    for name, ns in spent.items():
        print(f"| {name} | {ns / updates / 1000:.1f} |")
    base, with_counters = spent.values()
    print(f"\nratio with / without: {with_counters / base:.3f}\n")


def memory(accounts: int) -> None:
    catalog = parse_catalog(DEMO)
    ids = [f"acct-{i:08d}" for i in range(accounts)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    values = UsageCounters()
    data = catalog.rating_groups[10]
    for i, account_id in enumerate(ids):
        values.add(catalog.counters, catalog.timezone, account_id, data, MiB, 10_000, T0 + i)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"## Memory ({accounts} accounts, both demo counters used)\n")
    print(f"{len(values)} values: {(after - before) / accounts:.0f} bytes per account\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--memory", type=int, default=100_000)
    args = parser.parse_args()
    cpu(args.accounts, args.rounds)
    memory(args.memory)


if __name__ == "__main__":
    main()
