"""Offers benchmark: what allowances cost on the charging path, and in memory.

    .venv/bin/python -m bench.offers [--accounts 3000] [--rounds 5] [--memory 100000]

Prints a markdown report. Not a test: nothing is asserted.

1. Per-request CPU of the in-process core (thread time of decode + `handle_ccr`): data sessions
   (INITIAL, three UPDATEs reporting 3 MiB and asking again, TERMINATION) for N accounts,
   without offers, and with every account holding the demo catalog's bundle (its data
   allowance pays every grant and report: unit holds, posts, CDR attribution). The two are run
   alternately `--rounds` times in one process; the fastest round of each is reported, and
   their ratio.
2. Memory per subscription (tracemalloc): an `OfferBook` of M accounts holding the bundle (three
   unit balances each).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from ocs.core.charging import ChargingCore
from ocs.core.ledger import Ledger
from ocs.core.offers import OfferBook
from ocs.edge.catalog_files import demo_catalog_text
from protocol.codec import decode_body, encode_body
from protocol.codes import AccountOperation, CCRequestType, CommandCode, SubscriptionIdType
from protocol.messages import AMR, CCR, MsccRequest, ServiceUnit, SubscriptionId, UsedServiceUnit
from rating import parse_catalog

T0 = 1_767_618_000_000  # Monday 2026-01-05 14:00 Paris
BUNDLE = "bundle-15"


def _identity(i: int) -> tuple[SubscriptionId, ...]:
    return (
        SubscriptionId(
            subscription_id_type=SubscriptionIdType.END_USER_E164,
            subscription_id_data=f"49170{i:07d}",
        ),
    )


def _core(accounts: int, offers: bool) -> ChargingCore:
    core = ChargingCore(Ledger(), demo_catalog_text())
    for i in range(accounts):
        for n, (op, extra) in enumerate(
            (
                (
                    AccountOperation.CREATE,
                    {"amount": 100_000_000, "subscription_id": _identity(i)},
                ),
                (AccountOperation.SUBSCRIBE, {"offer_name": BUNDLE}),
            )
        ):
            if n and not offers:
                break
            amr = AMR(
                origin_host="admin.test",
                origin_realm="test",
                account_operation=op,
                account_id=f"acct{i}",
                **extra,  # type: ignore[arg-type]
            )
            assert core.handle_amr(T0, "admin.test", 2 * i + n, amr).answer.result_code == 2001
    return core


def _bodies(accounts: int, tag: str) -> list[bytes]:
    bodies = []
    for i in range(accounts):
        for n in range(5):
            kind = (
                CCRequestType.INITIAL
                if n == 0
                else CCRequestType.TERMINATION
                if n == 4
                else CCRequestType.UPDATE
            )
            used = None if n == 0 else (UsedServiceUnit(cc_total_octets=3 << 20),)
            mscc = MsccRequest(
                rating_group=10,
                requested_service_unit=ServiceUnit() if n < 4 else None,
                used_service_unit=used,
            )
            ccr = CCR(
                session_id=f"upf.test;{tag};{i}",
                origin_host="upf.test",
                origin_realm="test",
                destination_realm="test",
                auth_application_id=4,
                service_context_id="32251@3gpp.org",
                cc_request_type=kind,
                cc_request_number=n,
                subscription_id=_identity(i) if n == 0 else None,
                multiple_services_credit_control=(mscc,),
            )
            bodies.append(encode_body(ccr))
    return bodies


def _round(core: ChargingCore, bodies: list[bytes], e2e: int) -> float:
    """Thread CPU seconds per request over `bodies`."""
    gc.collect()
    start = time.thread_time()
    for k, body in enumerate(bodies):
        message = decode_body(CommandCode.CREDIT_CONTROL, True, body)
        assert isinstance(message, CCR)
        answer = core.handle_ccr(T0 + 60_000 + k, "upf.test", e2e + k, message).answer
        assert answer.result_code == 2001
    return (time.thread_time() - start) / len(bodies)


def cost(accounts: int, rounds: int) -> None:
    cores = {False: _core(accounts, False), True: _core(accounts, True)}
    best = {False: float("inf"), True: float("inf")}
    for r in range(rounds):
        for offers in (False, True):
            bodies = _bodies(accounts, f"r{r}")
            best[offers] = min(best[offers], _round(cores[offers], bodies, 1_000_000 * (r + 1)))
    requests = 5 * accounts
    print("## Offers: the charging path (`bench.offers`)\n")
    print(f"{accounts} data sessions of 5 requests ({requests} requests) per round, best of")
    print(f"{rounds} alternating rounds, thread CPU of decode + `handle_ccr`:\n")
    print("| accounts | us/request | ratio |")
    print("|---|---|---|")
    print(f"| without offers | {best[False] * 1e6:.1f} | 1.00 |")
    print(f"| holding {BUNDLE} (allowance pays) | {best[True] * 1e6:.1f} | ", end="")
    print(f"{best[True] / best[False]:.2f} |\n")


def memory(accounts: int) -> None:
    catalog = parse_catalog(demo_catalog_text())
    offer = catalog.offers[BUNDLE]
    ledger = Ledger()
    for i in range(accounts):
        ledger.create_account(
            f"c{i}", now_ms=T0, account_id=f"acct{i}", currency=978, balance=100_000_000
        )
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = OfferBook()
    for i in range(accounts):
        book.subscribe(ledger, f"acct{i}", offer, T0, catalog.timezone)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"Memory: {accounts} accounts holding {BUNDLE} (3 unit balances each):")
    print(f"{(after - before) / accounts:.0f} bytes per subscription (tracemalloc; the ledger's")
    print("remembered fee ids included).\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.offers", description=__doc__)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", type=int, default=100_000)
    args = parser.parse_args()
    cost(args.accounts, args.rounds)
    memory(args.memory)


if __name__ == "__main__":
    main()
