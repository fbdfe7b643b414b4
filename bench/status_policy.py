"""`python -m bench.status_policy`: what service control by account state costs the charging
core (issue 15, items 1 and 2; docs/benchmarks.md, *Status policies*).

In-process `ChargingCore` + `Ledger`, no codec, no journal: data sessions of three requests
(INITIAL for RG 10 and RG 20, an UPDATE reporting both and asking again, a TERMINATION) on the
demo catalog, in three variants measured in one run, interleaved, best of `--repeats`:

* **none**: the demo catalog without its `[status]` section (the core skips the policies);
* **states**: the demo catalog as shipped (`[status]` in force: each grant asks the account's
  state; no threshold);
* **thresholds**: the same with every account given an inhibit and a notification threshold
  (UPDATE), none of them reached (the indication is looked up on every answer).

CPU time per request, and each variant as a ratio of **none** (the machine is shared: timings
vary by tens of percent between runs). `--instructions` counts instructions per request with
valgrind's callgrind instead (two flow counts per variant, the difference divided by the extra
requests, as `bench.instructions`): those do not depend on the load of the machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ocs.core.charging import ChargingCore
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import demo_catalog_text
from protocol.codes import AccountOperation, CCRequestType, SubscriptionIdType
from protocol.messages import AMR, CCR, MsccRequest, ServiceUnit, SubscriptionId, UsedServiceUnit

MiB = 1 << 20
T0 = 1_767_618_000_000  # Monday 2026-01-05 14:00 Paris, ms
START = "# --- service control by account state"
END = "# --- account-wide usage thresholds"


def without_status(text: str) -> str:
    head, rest = text.split(START, 1)
    return head + END + rest.split(END, 1)[1]


def admin(op: AccountOperation, account_id: str, **keys: object) -> AMR:
    return AMR(
        origin_host="admin.bench",
        origin_realm="bench",
        account_operation=op,
        account_id=account_id,
        **keys,  # type: ignore[arg-type]
    )


def ccr(sid: str, kind: CCRequestType, number: int, msisdn: str, *msccs: MsccRequest) -> CCR:
    return CCR(
        session_id=sid,
        origin_host="upf.bench",
        origin_realm="bench",
        destination_realm="bench",
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
        if kind is CCRequestType.INITIAL
        else None,
        multiple_services_credit_control=msccs,
    )


def build(catalog: str, accounts: int, thresholds: bool) -> ChargingCore:
    core = ChargingCore(Ledger(), catalog, origin_host="ocs.bench")
    for i in range(accounts):
        account = f"a{i}"
        core.handle_amr(
            T0,
            "admin.bench",
            i,
            admin(
                AccountOperation.CREATE,
                account,
                amount=10**9,
                subscription_id=(
                    SubscriptionId(
                        subscription_id_type=SubscriptionIdType.END_USER_E164,
                        subscription_id_data=f"4917{i:08d}",
                    ),
                ),
            ),
        )
        if thresholds:
            core.handle_amr(
                T0,
                "admin.bench",
                accounts + i,
                admin(
                    AccountOperation.UPDATE,
                    account,
                    inhibit_threshold=1_000_000,
                    notify_threshold=2_000_000,
                ),
            )
    return core


def run(core: ChargingCore, flows: int, accounts: int, base: int) -> float:
    """CPU seconds for `flows` sessions of three requests."""
    ask = ServiceUnit()
    used = (UsedServiceUnit(cc_total_octets=MiB),)
    e2e = base
    gc.collect()
    started = time.process_time()
    for f in range(flows):
        i = f % accounts
        sid = f"upf.bench;{base};{f}"
        msisdn = f"4917{i:08d}"
        now = T0 + f
        for kind, number, msccs in (
            (
                CCRequestType.INITIAL,
                0,
                (
                    MsccRequest(rating_group=10, requested_service_unit=ask),
                    MsccRequest(rating_group=20, requested_service_unit=ask),
                ),
            ),
            (
                CCRequestType.UPDATE,
                1,
                (
                    MsccRequest(
                        rating_group=10, requested_service_unit=ask, used_service_unit=used
                    ),
                    MsccRequest(
                        rating_group=20, requested_service_unit=ask, used_service_unit=used
                    ),
                ),
            ),
            (
                CCRequestType.TERMINATION,
                2,
                (
                    MsccRequest(rating_group=10, used_service_unit=used),
                    MsccRequest(rating_group=20, used_service_unit=used),
                ),
            ),
        ):
            e2e += 1
            core.handle_ccr(now, "upf.bench", e2e, ccr(sid, kind, number, msisdn, *msccs))
        core.take_cdrs()
        core.take_actions()
        core.take_closed()
    return time.process_time() - started


def variant(name: str, accounts: int) -> ChargingCore:
    demo = demo_catalog_text()
    if name == "none":
        return build(without_status(demo), accounts, False)
    return build(demo, accounts, name == "thresholds")


VARIANTS = ("none", "states", "thresholds")


def instructions(name: str, flows: int, accounts: int, workdir: Path) -> int:
    out = workdir / f"callgrind.{name}.{flows}"
    worker = (sys.executable, "-m", "bench.status_policy", "--worker", name)
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            *worker,
            "--flows",
            str(flows),
            "--accounts",
            str(accounts),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status_policy", description=__doc__)
    parser.add_argument("--flows", type=int, default=3_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:  # one variant, once (under callgrind)
        run(variant(args.worker, args.accounts), args.flows, args.accounts, base=1)
        return 0
    if args.instructions:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed: skipped")
            return 0
        low, high = 100, 300
        print(f"instructions per request (callgrind, {high} - {low} sessions x 3 requests)\n")
        print("| variant | instructions per request | ratio to none |")
        print("|---|---:|---:|")
        per: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
            for name in VARIANTS:
                counts = [instructions(name, n, 100, Path(tmp)) for n in (low, high)]
                per[name] = (counts[1] - counts[0]) / ((high - low) * 3)
                print(f"| {name} | {per[name]:,.0f} | {per[name] / per['none']:.3f} |")
        return 0
    variants = {name: variant(name, args.accounts) for name in VARIANTS}
    best = dict.fromkeys(variants, float("inf"))
    for r in range(args.repeats):
        for name, core in variants.items():
            seconds = run(core, args.flows, args.accounts, base=(r + 1) * 10_000_000)
            best[name] = min(best[name], seconds)
    requests = 3 * args.flows
    print(f"{args.flows:,} data sessions x 3 requests, best of {args.repeats}, CPU time\n")
    print("| variant | µs per request | ratio to none |")
    print("|---|---:|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds / requests * 1e6:.1f} | {seconds / best['none']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
