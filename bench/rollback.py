"""What atomic inputs cost: the rebuild after an input the core failed on, and what is kept
for it (docs/durability.md, *Atomic inputs*).

    .venv/bin/python -m bench.rollback [--accounts 100000] [--sessions 100000]
                                      [--inputs 100000] [--dir DIR]

Builds a data directory the way the server does (`ocs.node.recover`, inputs applied by the core
then journaled and kept by `CoreComponent`): a catalog, `--accounts` CREATEs, `--sessions` data
sessions opened (INITIAL with a grant), a checkpoint, then `--inputs` UPDATEs with usage spread
over the sessions. Then it times `CoreComponent.rebuild` (what the node runs when the core
raises on an input): reading the latest snapshot, restoring it, replaying the inputs since. It
also prints what the kept inputs weigh and what keeping one costs on the per-request path.
Prints a markdown report. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import sys
import tempfile
import time
import timeit
from collections import deque
from pathlib import Path

from ocs.core.charging import Input, InputKind, encode_input
from ocs.edge.catalog_files import demo_catalog_text
from ocs.node import KIND_CORE, NodeConfig, Recovered, recover
from protocol.codec import encode_body
from protocol.codes import (
    AccountOperation,
    CCRequestType,
    CommandCode,
    ReportingReason,
    SubscriptionIdType,
)
from protocol.messages import AMR, CCR, MsccRequest, ServiceUnit, SubscriptionId, UsedServiceUnit

T0 = 1_767_618_000_000  # Monday 2026-01-05 14:00 Paris
UPF = "upf1.bench.local"
MiB = 1 << 20


class Driver:
    """Applies inputs as `Node` does: the core first, then the journal and the component."""

    def __init__(self, recovered: Recovered) -> None:
        self.store = recovered.store
        self.core = recovered.core
        self.component = recovered.component
        self.e2e = 0
        self.kept_bytes = 0

    def input(self, record: Input) -> None:
        result = self.core.apply(record)
        assert result is None or result.answer.result_code == 2001, result
        body = encode_input(record)
        self.store.append(KIND_CORE, body)
        self.component.journaled(body)
        self.kept_bytes += sys.getsizeof(body)
        self.core.take_cdrs()
        self.core.take_actions()
        self.core.take_closed()
        if self.store.journal.last_lsn % 4096 == 0:
            self.store.journal.flush()

    def request(self, message: AMR | CCR, now_ms: int) -> None:
        self.e2e += 1
        command = (
            CommandCode.CREDIT_CONTROL
            if isinstance(message, CCR)
            else CommandCode.ACCOUNT_MANAGEMENT
        )
        self.input(
            Input(
                kind=InputKind.REQUEST,
                now_ms=now_ms,
                origin_host=message.origin_host,
                end_to_end=self.e2e,
                command=int(command),
                body=encode_body(message),
            )
        )


def subscription(i: int) -> tuple[SubscriptionId, ...]:
    return (
        SubscriptionId(
            subscription_id_type=SubscriptionIdType.END_USER_E164,
            subscription_id_data=f"49151{i:08d}",
        ),
    )


def create(i: int) -> AMR:
    return AMR(
        origin_host=UPF,
        origin_realm="bench.local",
        account_operation=AccountOperation.CREATE,
        account_id=f"acct-{i:08d}",
        subscription_id=subscription(i),
        amount=1_000_000_000,
    )


def ccr(i: int, kind: CCRequestType, number: int, mscc: MsccRequest) -> CCR:
    return CCR(
        session_id=f"{UPF};{i}",
        origin_host=UPF,
        origin_realm="bench.local",
        destination_realm="bench.local",
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=kind,
        cc_request_number=number,
        subscription_id=subscription(i) if kind is CCRequestType.INITIAL else None,
        multiple_services_credit_control=(mscc,),
    )


def build(directory: Path, accounts: int, sessions: int, inputs: int) -> tuple[Driver, float]:
    recovered = recover(
        NodeConfig(data_dir=directory), origin_host="ocs.bench.local", origin_realm="bench.local"
    )
    driver = Driver(recovered)
    text = demo_catalog_text()
    driver.input(Input(kind=InputKind.CATALOG, now_ms=T0, body=text.encode()))
    for i in range(accounts):
        driver.request(create(i), T0)
    ask = MsccRequest(rating_group=10, requested_service_unit=ServiceUnit())
    for i in range(sessions):
        driver.request(ccr(i % accounts, CCRequestType.INITIAL, 0, ask), T0 + 1000)
    store = driver.store
    store.commit()
    lsn = store.checkpoint()
    driver.component.forget_through(lsn, store.journal.last_lsn)
    driver.kept_bytes = 0
    numbers = [1] * sessions
    used = MsccRequest(
        rating_group=10,
        requested_service_unit=ServiceUnit(),
        used_service_unit=(
            UsedServiceUnit(cc_total_octets=MiB, reporting_reason=ReportingReason.QUOTA_EXHAUSTED),
        ),
    )
    started = time.perf_counter()
    for n in range(inputs):
        i = n % sessions
        driver.request(ccr(i, CCRequestType.UPDATE, numbers[i], used), T0 + 2000 + n)
        numbers[i] += 1
    applied_s = time.perf_counter() - started
    store.commit()
    return driver, applied_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-rollback-", dir=args.dir))
    try:
        driver, applied_s = build(base / "data", args.accounts, args.sessions, args.inputs)
        store, component = driver.store, driver.component
        journal = store.journal
        gc.collect()
        started = time.perf_counter()
        snapshot = journal.load_snapshot()
        read_s = time.perf_counter() - started
        assert snapshot is not None
        kept = component.retained
        replayed = component.rebuild(snapshot, journal.last_lsn)
        rebuild_s = time.perf_counter() - started
        lsn = store.checkpoint()  # the same state, nothing to replay after it: restore alone
        component.forget_through(lsn, journal.last_lsn)
        gc.collect()
        started = time.perf_counter()
        latest = journal.load_snapshot()
        assert latest is not None
        component.rebuild(latest, journal.last_lsn)
        restore_s = time.perf_counter() - started
        empty: deque[bytes] = deque()
        append, body = empty.append, b"x" * 300
        keep_ns = min(timeit.repeat("append(body)", globals=locals(), number=100_000)) * 1e4
        store.close()
        driver.core.ledger.check_invariants()
        print(
            f"## Rollback (`bench.rollback`), {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} CPUs, "
            f"OCS_PURE={os.environ.get('OCS_PURE', '')!r}\n"
        )
        print(
            f"{args.accounts:,} accounts, {args.sessions:,} open sessions, a snapshot of "
            f"{len(snapshot[1]) / 1e6:.1f} MB, then {args.inputs:,} UPDATEs "
            f"(applied live at {args.inputs / applied_s:,.0f}/s)\n"
        )
        print("| what | measured |")
        print("|---|---:|")
        print(f"| rebuild: read the snapshot file | {read_s * 1000:,.0f} ms |")
        print(
            f"| rebuild: restore it + replay {replayed:,} inputs | "
            f"{(rebuild_s - read_s) * 1000:,.0f} ms |"
        )
        print(
            f"| **rebuild, in all** (the loop stops serving meanwhile) | **{rebuild_s:,.2f} s** |"
        )
        print(
            f"| rebuild with nothing to replay (read + restore the state after them, "
            f"{len(latest[1]) / 1e6:.1f} MB) | {restore_s * 1000:,.0f} ms |"
        )
        print(
            f"| inputs kept for a rebuild | {kept:,} ({driver.kept_bytes / 1e6:.1f} MB, "
            f"{driver.kept_bytes / max(kept, 1):.0f} B each) |"
        )
        print(f"| keeping one (a deque append, per journaled input) | {keep_ns:.0f} ns |")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
