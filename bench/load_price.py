"""What load-modulated prices cost the in-process core (docs/benchmarks.md, "Load-modulated
prices").

    .venv/bin/python -m bench.load_price               # --sessions N --repeat R

The same data sessions (INITIAL granting RG 10 and RG 20, an UPDATE reporting usage on both and
asking again, a TERMINATION reporting usage), fed to `ChargingCore.handle_ccr` in one process,
under three catalogs: the demo without its `[load]` section, the demo (RG 20 priced by the
"grants" measure, base band), and the demo with the bands entered from the first grant (every
RG 20 grant and report priced in a band: the scaled tariff). Each case is timed with the
process CPU time, best of `--repeat`, in turns, in one run: the figures are ratios to the first
case. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

from ocs.core.accounts import SubscriberIdentity
from ocs.core.charging import ChargingCore
from ocs.core.ledger import CreateAccount, Ledger
from ocs.edge.catalog_files import demo_catalog_text
from protocol.codes import CCRequestType, SubscriptionIdType
from protocol.messages import CCR, MsccRequest, ServiceUnit, SubscriptionId, UsedServiceUnit

HOST = "pgw.bench.local"
MiB = 1 << 20
T0_MS = 1_767_621_600_000  # Monday 2026-01-05 14:00 Paris


def catalogs() -> list[tuple[str, str]]:
    demo = demo_catalog_text()
    without = demo.split("\n[load]\n")[0] + "\n"
    banded = demo.replace("enter = 2000 ", "enter = 1 ", 1).replace(
        "leave = 1500 ", "leave = 1 ", 1
    )
    return [("no [load] section", without), ("demo [load], base band", demo), ("in a band", banded)]


def _ccr(n: int, kind: CCRequestType, number: int, msccs: tuple[MsccRequest, ...]) -> CCR:
    sub = (
        SubscriptionId(
            subscription_id_type=SubscriptionIdType.END_USER_E164,
            subscription_id_data=f"4915{n:08d}",
        ),
    )
    return CCR(
        session_id=f"{HOST};{n}",
        origin_host=HOST,
        origin_realm="bench.local",
        destination_realm="bench.local",
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=kind,
        cc_request_number=number,
        subscription_id=sub if kind is CCRequestType.INITIAL else None,
        multiple_services_credit_control=msccs,
    )


def _msccs(*, ask: bool, used: int | None) -> tuple[MsccRequest, ...]:
    return tuple(
        MsccRequest(
            rating_group=rg,
            requested_service_unit=ServiceUnit() if ask else None,
            used_service_unit=(UsedServiceUnit(cc_total_octets=used),) if used else None,
        )
        for rg in (10, 20)
    )


def run_case(catalog: str, sessions: int) -> float:
    """CPU seconds for `sessions` data sessions (3 CCRs each) through a fresh core."""
    ledger = Ledger()
    core = ChargingCore(ledger, catalog)
    for n in range(sessions):
        ledger.apply(
            CreateAccount(
                id=f"c{n}",
                now_ms=T0_MS,
                account_id=f"a{n}",
                subscriptions=(SubscriberIdentity(type=0, data=f"4915{n:08d}"),),
                currency=978,
                balance=100_000_000,
            )
        )
    requests = []
    for n in range(sessions):
        requests.append((_ccr(n, CCRequestType.INITIAL, 0, _msccs(ask=True, used=None)), 0))
        requests.append((_ccr(n, CCRequestType.UPDATE, 1, _msccs(ask=True, used=MiB)), 1))
        requests.append((_ccr(n, CCRequestType.TERMINATION, 2, _msccs(ask=False, used=MiB)), 2))
    began = time.process_time()
    for i, (message, step) in enumerate(requests):
        result = core.handle_ccr(T0_MS + step * 1000 + i, HOST, i, message)
        assert result.answer.result_code == 2001, result.answer
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cases = catalogs()
    best = {name: float("inf") for name, _ in cases}
    for _ in range(args.repeat):
        for name, text in cases:
            best[name] = min(best[name], run_case(text, args.sessions))
    base = best[cases[0][0]]
    print(f"{args.sessions} data sessions x 3 CCRs, best of {args.repeat} (process CPU time)")
    print()
    print("| catalog | CPU s | µs per CCR | ratio |")
    print("|---|---|---|---|")
    per = 3 * args.sessions
    for name, _ in cases:
        micros = 1e6 * best[name] / per
        print(f"| {name} | {best[name]:.3f} | {micros:.1f} | {best[name] / base:.3f} |")


if __name__ == "__main__":
    main()
