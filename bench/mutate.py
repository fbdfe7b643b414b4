"""`make mutate`: targeted mutation testing of the money paths (a development tool, not a test).

Each mutant below changes one key line of the product: a rounding direction, a posted or voided
amount, a CDR number, the order of durability and answers, actions or snapshots, the Tcc. The
tool copies the tree once into a temporary directory (never touching the worktree), applies one
mutant at a time to the copy, runs the tests that should notice it (pure build: ``OCS_PURE=1``,
the copy first on ``PYTHONPATH``, bytecode off so a restored file is never shadowed by the
mutant's), and puts the file back. A mutant is *killed* if a test fails, *survives* if the tests
pass. Every mutant must match its file exactly once: one that no longer does (the code moved on)
is reported as *stale*, never silently skipped.

    .venv/bin/python -m bench.mutate                  # every mutant (~15 min on 2 cores)
    .venv/bin/python -m bench.mutate ledger-post-capped tcc-last-validity   # some, by name
    .venv/bin/python -m bench.mutate --list           # names and what each breaks
    .venv/bin/python -m bench.mutate --check          # every mutant still applies (no tests)
    .venv/bin/python -m bench.mutate --tests tests/charging/test_core_machine.py
                                                      # what one test alone kills

The exit status is 1 if a mutant survives (unless documented as equivalent) or is stale.
Hypothesis runs with a fixed seed (``--seed``), without its example database and without
shrinking (a failure is all that counts), so a run is reproducible. See docs/testing.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --- which tests each kind of mutant should fail (fast, specific ones first) ------------------

RATING = ("tests/rating", "tests/charging")
CORE = (
    "tests/charging/test_sessions.py",
    "tests/charging/test_events.py",
    "tests/charging/test_money_paths.py",
    "tests/charging/test_supervision_actions.py",
    "tests/charging/test_core_machine.py",
    "tests/charging",
    "tests/ledger",
)
LEDGER = ("tests/ledger", "tests/charging")
CDRS = (*CORE, "tests/cdr", "tests/conformance/test_s9_cdrs.py")
NODE = (
    "tests/durability/test_app_ordering.py",
    "tests/durability",
    "tests/charging/test_catalog_reload.py",
    "tests/charging/test_crash.py",
    "tests/charging/test_server_e2e.py",
)
COMMIT = ("tests/ledger/test_group_commit.py", "tests/durability", "tests/server/test_server.py")


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutant:
    name: str
    path: str  # relative to the tree
    before: str  # exact text, found exactly once in the file
    after: str
    breaks: str  # the behaviour the mutant breaks
    tests: tuple[str, ...]
    equivalent: str | None = None  # why no test can tell (then it is expected to survive)


MUTANTS: tuple[Mutant, ...] = (
    # --- rounding directions: rating/money.py and its call sites ------------------------------
    Mutant(
        name="div-ceil-floors",
        path="rating/money.py",
        before="    return -((-a) // b)",
        after="    return a // b",
        breaks="div_ceil rounds down: charges round in the customer's favour",
        tests=RATING,
    ),
    Mutant(
        name="div-floor-ceils",
        path="rating/money.py",
        before='        raise ZeroDivisionError("div_floor needs a positive divisor")\n'
        "    return a // b",
        after='        raise ZeroDivisionError("div_floor needs a positive divisor")\n'
        "    return -((-a) // b)",
        breaks="div_floor rounds up: grants, apportioning and thresholds round up",
        tests=RATING,
    ),
    Mutant(
        name="floor-to-multiple-ceils",
        path="rating/money.py",
        before="    return div_floor(a, step) * step",
        after="    return div_ceil(a, step) * step",
        breaks="floor_to_multiple rounds up",
        tests=RATING,
    ),
    Mutant(
        name="ceil-to-multiple-floors",
        path="rating/money.py",
        before="    return div_ceil(a, step) * step",
        after="    return div_floor(a, step) * step",
        breaks="ceil_to_multiple rounds down",
        tests=RATING,
    ),
    Mutant(
        name="format-money-floors",
        path="rating/money.py",
        before="    scaled = div_ceil(abs(micro), step)",
        after="    scaled = div_floor(abs(micro), step)",
        breaks="money shown with fewer decimals rounds down (shows less than is charged)",
        tests=RATING,
    ),
    Mutant(
        name="cumulative-floors",
        path="rating/tariff.py",
        before="        return div_ceil(position * self.num, self.den)",
        after="        return div_floor(position * self.num, self.den)",
        breaks="CUMULATIVE_CEIL: the money of billed positions rounds down",
        tests=RATING,
    ),
    Mutant(
        name="billed-floors",
        path="rating/model.py",
        before="ceil_to_multiple(used - self.first, self.increment)",
        after="floor_to_multiple(used - self.first, self.increment)",
        breaks="a started increment is not billed",
        tests=RATING,
    ),
    Mutant(
        name="grid-floor-ceils",
        path="rating/model.py",
        before="floor_to_multiple(position - self.first, self.increment)",
        after="ceil_to_multiple(position - self.first, self.increment)",
        breaks="a grant ends on the increment boundary above what is affordable",
        tests=RATING,
    ),
    Mutant(
        name="threshold-ceils",
        path="rating/model.py",
        before="return div_floor(granted * self.threshold.numerator, self.threshold.denominator)",
        after="return -((-granted * self.threshold.numerator) // self.threshold.denominator)",
        breaks="the quota threshold rounds up",
        tests=RATING,
    ),
    Mutant(
        name="apportion-ceils",
        path="rating/engine.py",
        before="div_floor(remaining * (t1 - t0), remaining_time)",
        after="-(-(remaining * (t1 - t0)) // remaining_time)",
        breaks="APPORTION_FLOOR: usage split at a tariff change rounds up in the earlier part",
        tests=RATING,
    ),
    Mutant(
        name="affordable-ceils",
        path="rating/engine.py",
        before="limit = div_floor((budget + base) * rate.den, rate.num)",
        after="limit = -(-((budget + base) * rate.den) // rate.num)",
        breaks="a grant cut to the balance may cost more than the balance",
        tests=RATING,
    ),
    # --- post and void amounts: ocs/core/charging.py --------------------------------------------
    Mutant(
        name="post-capped-at-reservation",
        path="ocs/core/charging.py",
        before="amount=total,\n                ),\n                internal=True,",
        after="amount=min(total, grant.amount),\n"
        "                ),\n                internal=True,",
        breaks="usage beyond the grant is recorded in the CDR but not charged",
        tests=CORE,
    ),
    Mutant(
        name="post-the-reservation",
        path="ocs/core/charging.py",
        before="amount=total,\n                ),\n                internal=True,",
        after="amount=grant.amount,\n                ),\n                internal=True,",
        breaks="the reserved amount is charged, not the usage",
        tests=CORE,
    ),
    Mutant(
        name="fee-not-posted",
        path="ocs/core/charging.py",
        before="            total += charge + fee",
        after="            total += charge",
        breaks="the setup fee is in the CDR but not charged",
        tests=CORE,
    ),
    Mutant(
        name="fee-every-report",
        path="ocs/core/charging.py",
        before="            if units > 0 and rg.setup_fee and rg_id not in session.fee_charged:",
        after="            if units > 0 and rg.setup_fee:",
        breaks="the setup fee is charged on every report, not once per session",
        tests=CORE,
    ),
    Mutant(
        name="prior-not-cumulative",
        path="ocs/core/charging.py",
        before="            session.rated[rg_id] = prior + units",
        after="            session.rated[rg_id] = units",
        breaks="billing increments restart at every report (the session's count is lost)",
        tests=CORE,
    ),
    Mutant(
        name="usage-without-grant-free",
        path="ocs/core/charging.py",
        before="        elif total:\n            self._debit_anyway(session, total, now_ms)",
        after="        elif False:\n            self._debit_anyway(session, total, now_ms)",
        breaks="usage with no grant (expired, refused, never asked) is not charged",
        tests=CORE,
    ),
    Mutant(
        name="debit-anyway-refusable",
        path="ocs/core/charging.py",
        before="                allow_overdraft=True,",
        after="                allow_overdraft=False,",
        breaks="usage with no grant is not charged when the balance cannot pay it",
        tests=CORE,
    ),
    Mutant(
        name="release-keeps-reservation",
        path="ocs/core/charging.py",
        before="if grant is not None:\n            self._void(grant.reservation_id, now_ms)",
        after="if grant is not None:\n            pass",
        breaks="a grant given back without usage stays reserved",
        tests=CORE,
    ),
    Mutant(
        name="void-nothing",
        path="ocs/core/charging.py",
        before="    def _void(self, reservation_id: str, now_ms: int) -> None:\n"
        "        self.ledger.apply(",
        after="    def _void(self, reservation_id: str, now_ms: int) -> None:\n"
        "        return\n        self.ledger.apply(",
        breaks="no reservation is ever voided",
        tests=CORE,
    ),
    Mutant(
        name="termination-keeps-grants",
        path="ocs/core/charging.py",
        before="        if terminating:\n            self._release_all(session, now_ms)",
        after="        if terminating:\n            pass",
        breaks="TERMINATION leaves the grants it did not report on reserved",
        tests=CORE,
    ),
    Mutant(
        name="supervision-keeps-grants",
        path="ocs/core/charging.py",
        before="        for session in silent:\n            self._release_all(session, now_ms)",
        after="        for session in silent:\n            pass",
        breaks="a session closed by Tcc leaves its grants reserved",
        tests=CORE,
    ),
    Mutant(
        name="reserve-at-current-rate",
        path="ocs/core/charging.py",
        before="        cost = price_dearest(rg, units, now_s, end_s, prior).total + fee\n",
        after="        cost = price_at(rg, units, now_s, prior).total + fee\n",
        breaks="a grant is reserved at the rate in force now, not the dearest of its validity",
        tests=CORE,
    ),
    Mutant(
        name="charge-total-not-summed",
        path="ocs/core/charging.py",
        before="            session.charge_total += total",
        after="            session.charge_total = total",
        breaks="AoC Cost-Information shows the last report, not the session's charge",
        tests=CORE,
    ),
    Mutant(
        name="event-debit-boundary",
        path="ocs/core/charging.py",
        before="            if total > headroom:",
        after="            if total >= headroom:",
        breaks="an event that costs exactly the headroom is refused",
        tests=CORE,
    ),
    Mutant(
        name="refund-cdr-positive",
        path="ocs/core/charging.py",
        before="            sign = -1",
        after="            sign = 1",
        breaks="a refund's CDR is a positive charge",
        tests=CORE,
    ),
    Mutant(
        name="beyond-grant-per-usu",
        path="ocs/core/charging.py",
        before="granted_left = (grant.units if grant is not None else 0) - used_total",
        after="granted_left = grant.units if grant is not None else 0",
        breaks="beyondGrant ignores the units of the earlier USUs of the same report",
        tests=CDRS,
    ),
    # --- refunds bounded by earlier debits (WIRE.md 5.4) ----------------------------------------
    Mutant(
        name="refund-part-rounds-up",
        path="ocs/core/charging.py",
        before="                money = charge * take // have\n",
        after="                money = -(-charge * take // have)\n",
        breaks="a refund of part of a debit rounds up (gives back more than its share)",
        tests=CORE,
    ),
    Mutant(
        name="refund-draws-oldest-first",
        path="ocs/core/charging.py",
        before="                    if e.at_ms >= horizon\n                ]",
        after="                    if e.at_ms >= horizon\n                ][::-1]",
        breaks="a refund draws on the oldest debits first, at their prices, not the newest",
        tests=CORE,
    ),
    Mutant(
        name="refund-beyond-debits",
        path="ocs/core/charging.py",
        before="                if not stack:\n                    return n",
        after="                if not stack:\n                    break",
        breaks="a refund of more than was debited credits what there was and is answered 2001",
        tests=CORE,
    ),
    Mutant(
        name="refund-window-edge",
        path="ocs/core/charging.py",
        before="                    if e.at_ms >= horizon\n",
        after="                    if e.at_ms > horizon\n",
        breaks="a debit exactly one refund window old can no longer be refunded",
        tests=CORE,
    ),
    Mutant(
        name="refund-window-unbounded",
        path="ocs/core/charging.py",
        before="        horizon = now_ms - self.refund_window_s * MS\n        # per pair",
        after="        horizon = 0\n        # per pair",
        breaks="a refund draws on debits older than the refund window",
        tests=CORE,
    ),
    Mutant(
        name="debit-not-refundable",
        path="ocs/core/charging.py",
        before="        entries.append(entry)\n",
        after="        entries.append(entry) if False else None\n",
        breaks="a second DIRECT_DEBITING of the same group is not remembered for refunds",
        tests=CORE,
    ),
    Mutant(
        name="restart-ignores-refund-window",
        path="ocs/node.py",
        before="if core.refund_window_s != config.refund_window_s and not node._put_settings(",
        after="if False and not node._put_settings(",
        breaks="a restart with another refund window keeps the journaled one",
        tests=NODE,
    ),
    # --- a session belongs to its peer (WIRE.md 5.3) --------------------------------------------
    Mutant(
        name="foreign-peer-charges",
        path="ocs/core/charging.py",
        before="        if owner is not None and session.origin_host != owner:\n"
        "            return None\n        return session",
        after="        return session",
        breaks="another peer's UPDATE/TERMINATION charges and ends the session",
        tests=CORE,
    ),
    # --- post, void and expire arithmetic: ocs/core/ledger.py ------------------------------------
    Mutant(
        name="ledger-post-capped",
        path="ocs/core/ledger.py",
        before="        outcome = self._charge(account, cmd.amount)",
        after="        outcome = self._charge(account, min(cmd.amount, reservation.amount))",
        breaks="the ledger charges at most the reservation",
        tests=LEDGER,
    ),
    Mutant(
        name="ledger-post-keeps-reservation",
        path="ocs/core/ledger.py",
        before="if outcome.code is Code.OK:\n            self._release(account, reservation)",
        after="if outcome.code is Code.OK and not outcome.overdraft:\n"
        "            self._release(account, reservation)",
        breaks="a post into overdraft leaves its reservation open",
        tests=LEDGER,
    ),
    Mutant(
        name="ledger-release-nothing",
        path="ocs/core/ledger.py",
        before="        account.reserved -= reservation.amount",
        after="        account.reserved -= 0",
        breaks="closing a reservation does not release the money it held",
        tests=LEDGER,
    ),
    Mutant(
        name="ledger-debits-not-counted",
        path="ocs/core/ledger.py",
        before="        self._debits += amount",
        after="        self._debits += 0",
        breaks="charges are missing from the ledger's totals",
        tests=LEDGER,
    ),
    Mutant(
        name="ledger-expire-late",
        path="ocs/core/ledger.py",
        before="if expires_at_ms is None or expires_at_ms > cmd.now_ms:\n                break",
        after="if expires_at_ms is None or expires_at_ms >= cmd.now_ms:\n                break",
        breaks="a reservation due exactly now is not expired",
        tests=LEDGER,
    ),
    Mutant(
        name="ledger-reserve-boundary",
        path="ocs/core/ledger.py",
        before="cmd.amount < -account.credit_limit:\n"
        "            return OUTCOME_OF_CODE[Code.INSUFFICIENT_FUNDS]\n"
        "        account.reserved += cmd.amount",
        after="cmd.amount <= -account.credit_limit:\n"
        "            return OUTCOME_OF_CODE[Code.INSUFFICIENT_FUNDS]\n"
        "        account.reserved += cmd.amount",
        breaks="reserving exactly the headroom is refused",
        tests=LEDGER,
    ),
    Mutant(
        name="ledger-debit-boundary",
        path="ocs/core/ledger.py",
        before="and account.balance - account.reserved - cmd.amount < -account.credit_limit",
        after="and account.balance - account.reserved - cmd.amount <= -account.credit_limit",
        breaks="debiting exactly the headroom is refused",
        tests=LEDGER,
    ),
    Mutant(
        name="ledger-overdraft-flag",
        path="ocs/core/ledger.py",
        before="        return OK_OVERDRAFT if balance < -account.credit_limit else OK_OUTCOME",
        after="        return OK_OVERDRAFT if balance <= -account.credit_limit else OK_OUTCOME",
        breaks="a charge to exactly the credit limit is reported as an overdraft",
        tests=LEDGER,
    ),
    # --- CDR numbering ----------------------------------------------------------------------------
    Mutant(
        name="cdr-seq-repeats",
        path="ocs/core/charging.py",
        before="        self.cdr_seq += 1\n        return self.cdr_seq",
        after="        return self.cdr_seq + 1",
        breaks="every CDR gets the same recordSequenceNumber",
        tests=CDRS,
    ),
    Mutant(
        name="cdr-seq-skips",
        path="ocs/core/charging.py",
        before="        self.cdr_seq += 1\n        return self.cdr_seq",
        after="        self.cdr_seq += 2\n        return self.cdr_seq",
        breaks="recordSequenceNumber skips numbers",
        tests=CDRS,
    ),
    Mutant(
        name="cdr-local-seq-frozen",
        path="ocs/core/charging.py",
        before="        session.local_seq += 1\n",
        after="        session.local_seq = 1\n",
        breaks="a session's partial records all have localSequenceNumber 1",
        tests=CDRS,
    ),
    Mutant(
        name="cdr-event-local-seq",
        path="ocs/core/charging.py",
        before='            "localSequenceNumber": 1,',
        after='            "localSequenceNumber": 0,',
        breaks="an event record's localSequenceNumber is 0",
        tests=CDRS,
    ),
    Mutant(
        name="cdr-seq-lost-on-restore",
        path="ocs/core/charging.py",
        before="        self.cdr_seq = state.cdr_seq",
        after="        self.cdr_seq = 0",
        breaks="CDR numbering starts again at 1 after a snapshot",
        tests=CDRS,
    ),
    Mutant(
        name="reservation-seq-lost-on-snapshot",
        path="ocs/core/charging.py",
        before="                reservation_seq=self._reservation_seq,",
        after="                reservation_seq=0,",
        breaks="reservation ids are reused after a snapshot",
        tests=CORE,
    ),
    # --- durability ordering: answers, actions, CDRs, snapshots -----------------------------------
    Mutant(
        name="answer-before-durable",
        path="ocs/edge/server.py",
        before="        self.server.gate.defer("
        "partial(self._send_answer, header, answer, received))",
        after="        self._send_answer(header, answer, received)",
        breaks="an answer leaves before the journal record it acknowledges is durable",
        tests=COMMIT,
    ),
    Mutant(
        name="group-commit-releases-early",
        path="ocs/edge/group_commit.py",
        before="        if callbacks:\n            self._waiting.append((written, callbacks))",
        after="        if callbacks:\n            self._run(callbacks)",
        breaks="group commit runs a batch's callbacks (answers) before its fsync",
        tests=COMMIT,
    ),
    Mutant(
        name="actions-before-durable",
        path="ocs/node.py",
        before="            self.commit.defer(lambda: self._send_actions(actions))",
        after="            self._send_actions(actions)",
        breaks="RAR/ASR are sent before the input that caused them is durable",
        tests=NODE,
    ),
    Mutant(
        name="cdrs-before-durable",
        path="ocs/node.py",
        before="if not pending or pending[0][0] > durable:\n            return\n"
        "        try:\n            while pending and pending[0][0] <= durable:",
        after="if not pending:\n            return\n        try:\n            while pending:",
        breaks="CDRs reach the CDR files before their journal record is durable",
        tests=NODE,
    ),
    Mutant(
        name="cdrs-of-a-later-batch-early",
        path="ocs/node.py",
        before="            while pending and pending[0][0] <= durable:",
        after="            while pending:",
        breaks="a durable batch also moves the CDRs of a later batch, not yet durable",
        tests=NODE,
    ),
    Mutant(
        name="cdrs-not-moved-at-commit",
        path="ocs/node.py",
        before="            self.commit.defer(self._move_cdrs)",
        after="            self._move_cdrs()",
        breaks="CDRs wait for the next timer tick instead of their batch's durability",
        tests=NODE,
    ),
    Mutant(
        name="snapshot-before-cdr-sync",
        path="ocs/node.py",
        before="            await self._offload(cdrs.commit)\n",
        after="",
        breaks="a snapshot is installed before the CDR files it counts are synced",
        tests=NODE,
    ),
    Mutant(
        name="snapshot-without-cdrs",
        path="ocs/node.py",
        before="            if cdrs.durable_sequence < seq:\n",
        after="            if False:\n",
        breaks="a snapshot is installed although the CDR files lack records it counts",
        tests=NODE,
        equivalent=(
            "`_checkpoint` reads the CDR sequence when it captures the state, then waits for "
            "the journal to be durable past that capture, moves every CDR of a durable record "
            "and commits the CDR files; each of those raises if it fails. So when the check "
            "runs, the files hold every record the snapshot counts: it is defence in depth."
        ),
    ),
    Mutant(
        name="close-checkpoints-without-cdrs",
        path="ocs/node.py",
        before="                if cdrs.durable_sequence >= core.cdr_seq:",
        after="                if True:",
        breaks="shutdown checkpoints although CDRs are missing from the files",
        tests=NODE,
    ),
    Mutant(
        name="restart-ignores-catalog",
        path="ocs/node.py",
        before="if core.catalog_journaled and (path is None or core.catalog_text == text):",
        after="if core.catalog_journaled:",
        breaks="a restart with a changed --catalog keeps the journaled catalog",
        tests=NODE,
    ),
    # --- Tcc (WIRE.md 5.3) --------------------------------------------------------------------
    Mutant(
        name="tcc-last-validity",
        path="ocs/core/charging.py",
        before="2 * validity if session.grants_made == 0 else max(session.tcc_s, 2 * validity)",
        after="2 * validity",
        breaks="Tcc follows the last Validity-Time, not the longest",
        tests=CORE,
    ),
    Mutant(
        name="tcc-once-validity",
        path="ocs/core/charging.py",
        before="2 * validity if session.grants_made == 0 else max(session.tcc_s, 2 * validity)",
        after="validity if session.grants_made == 0 else max(session.tcc_s, validity)",
        breaks="Tcc is one Validity-Time, not two",
        tests=CORE,
    ),
    Mutant(
        name="tcc-from-opening",
        path="ocs/core/charging.py",
        before="        return session.last_ms // MS + session.tcc_s",
        after="        return session.opened_ms // MS + session.tcc_s",
        breaks="Tcc counts from the session's opening, not from its last request",
        tests=CORE,
    ),
    Mutant(
        name="tcc-one-second-late",
        path="ocs/core/charging.py",
        before="        return session.last_ms // MS + session.tcc_s",
        after="        return session.last_ms // MS + session.tcc_s + 1",
        breaks="a session silent for exactly Tcc is not yet closed",
        tests=CORE,
    ),
    Mutant(
        name="tcc-default-ignored",
        path="ocs/core/charging.py",
        before="            tcc_s=self.min_tcc_s,",
        after="            tcc_s=2 * self.min_tcc_s,",
        breaks="a session without any grant is not closed after the configured minimum Tcc",
        tests=CORE,
    ),
    Mutant(
        name="tcc-lost-on-restore",
        path="ocs/core/charging.py",
        before="            self._deadlines.add(self._deadline(s), sid)",
        after="            pass",
        breaks="sessions restored from a snapshot are never supervised",
        tests=CORE,
    ),
    Mutant(
        name="reservation-no-slack",
        path="ocs/core/charging.py",
        before="expires_at_ms=(now_s + session.tcc_s + RESERVATION_SLACK_S) * MS,",
        after="expires_at_ms=(now_s + session.tcc_s) * MS,",
        breaks="a grant's reservation expires without its minute of slack after the Tcc",
        tests=CORE,
    ),
)


# --- running -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    mutant: Mutant
    status: str  # killed, survived, equivalent, stale, timeout, error
    by: str  # the first failing test, or why not
    seconds: float


_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
    "*.egg-info",
    "*.so",
    "*.pyc",
)


def make_tree(base: Path) -> Path:
    """A pure copy of the worktree at ``base/tree``, with ``base/shared`` beside it (the tests
    read the spec's vectors from ``../shared``)."""
    tree = base / "tree"
    shutil.copytree(ROOT, tree, ignore=_IGNORE, symlinks=True)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (base / "shared").symlink_to(shared)
    return tree


def environment(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["OCS_PURE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_isolation(tree: Path) -> None:
    """The copy, not the worktree, is what the tests import."""
    code = "import ocs.node, protocol.codec, rating.money; print(ocs.node.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,
        env=environment(tree),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the tests would import {out}, not the copy in {tree}")


_FAILED = re.compile(r"^(?:FAILED|ERROR) (tests/.+?)(?: - .*)?$", re.MULTILINE)

# pytest, with hypothesis told (before any test module builds its settings) not to shrink a
# failure, which only costs time here, and to keep no example database between mutants.
_PYTEST = (
    "import sys; from hypothesis import Phase, settings; "
    "settings.register_profile('mutate', database=None, "
    "phases=[Phase.explicit, Phase.reuse, Phase.generate]); "
    "settings.load_profile('mutate'); import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)


def run_tests(
    tree: Path, tests: tuple[str, ...], seed: int, timeout_s: float, log: Path | None = None
) -> tuple[int, str]:
    """Run ``tests`` in the copy; (pytest's exit status or -1 on timeout, first failure). With
    ``log``, pytest's output is written there."""
    shutil.rmtree(tree / ".hypothesis", ignore_errors=True)
    command = [
        sys.executable,
        "-c",
        _PYTEST,
        "-q",
        "-x",
        "-rfE",
        "--tb=short",
        "-p",
        "no:cacheprovider",
        f"--hypothesis-seed={seed}",
        *tests,
    ]
    # its own process group: on a timeout or an interrupt, the servers it started go too
    process = subprocess.Popen(
        command,
        cwd=tree,
        env=environment(tree),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return -1, f"timeout after {timeout_s:.0f} s"
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    if log is not None:
        log.write_text(stdout + stderr)
    found = _FAILED.search(stdout)
    if found is not None:
        return process.returncode, found.group(1)
    tail = (stdout + stderr).strip().splitlines()[-1:] or [""]
    return process.returncode, tail[0]


def apply(tree: Path, mutant: Mutant) -> str | None:
    """Write the mutant into the copy; returns the original text, or None if stale."""
    path = tree / mutant.path
    original = path.read_text()
    if original.count(mutant.before) != 1:
        return None
    mutated = original.replace(mutant.before, mutant.after)
    compile(mutated, str(path), "exec")  # a mutant must be valid Python
    path.write_text(mutated)
    return original


_WARNED: set[str] = set()


def present(tree: Path, tests: tuple[str, ...]) -> tuple[str, ...]:
    """The test paths that exist in the tree (an older tree may lack some): a missing one is
    named, never silently dropped."""
    missing = [t for t in tests if not (tree / t.split("::")[0]).exists()]
    for test in missing:
        if test not in _WARNED:
            _WARNED.add(test)
            print(f"warning: {test} is not in the tree", flush=True)
    return tuple(t for t in tests if t not in missing)


def run_mutant(
    tree: Path, mutant: Mutant, seed: int, timeout_s: float, logs: Path | None = None
) -> Outcome:
    started = time.monotonic()
    original = apply(tree, mutant)
    if original is None:
        return Outcome(mutant, "stale", "the text to mutate is not in the file exactly once", 0)
    try:
        log = None if logs is None else logs / f"{mutant.name}.log"
        code, first = run_tests(tree, present(tree, mutant.tests), seed, timeout_s, log)
    finally:
        (tree / mutant.path).write_text(original)
    seconds = time.monotonic() - started
    if code == 0:
        if mutant.equivalent is not None:
            return Outcome(mutant, "equivalent", mutant.equivalent, seconds)
        return Outcome(mutant, "survived", "no test failed", seconds)
    if code == -1:
        return Outcome(mutant, "timeout", first, seconds)
    if code in (1, 2):  # tests failed, or the mutant broke collection
        return Outcome(mutant, "killed", first, seconds)
    return Outcome(mutant, "error", f"pytest exit status {code}: {first}", seconds)


def table(outcomes: list[Outcome]) -> str:
    lines = ["| mutant | file | breaks | result | killed by (first failing test) |"]
    lines.append("|---|---|---|---|---|")
    for o in outcomes:
        m = o.mutant
        lines.append(f"| `{m.name}` | `{m.path}` | {m.breaks} | {o.status} | {o.by} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutate", description=__doc__)
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true", help="check every mutant applies")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--report", type=Path, help="also write the table to this file")
    parser.add_argument("--logs", type=Path, help="write each mutant's test output here")
    parser.add_argument(
        "--tests",
        nargs="+",
        metavar="PATH",
        help="run these tests for every mutant instead of each one's own (to measure a test)",
    )
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the running tests are stopped and the copy is removed
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    names = {m.name for m in MUTANTS}
    if len(names) != len(MUTANTS):
        raise SystemExit("two mutants share a name")
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown mutants: {', '.join(unknown)}")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.tests:
        chosen = [dataclasses.replace(m, tests=tuple(args.tests)) for m in chosen]
    if args.list:
        for m in chosen:
            print(f"{m.name:34} {m.path:26} {m.breaks}")
        return 0

    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ocs-mutate-") as tmp:
        tree = make_tree(Path(tmp))
        if args.check:
            stale = []
            for m in chosen:
                original = apply(tree, m)
                if original is None:
                    stale.append(m.name)
                else:
                    (tree / m.path).write_text(original)
            for name in stale:
                print(f"stale: {name}")
            print(f"{len(chosen) - len(stale)} of {len(chosen)} mutants apply")
            return 1 if stale else 0
        check_isolation(tree)
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            print(f"baseline: {' '.join(tests)}", flush=True)
            code, first = run_tests(tree, present(tree, tests), args.seed, args.timeout * 2)
            if code != 0:
                print(f"the unmutated tests fail ({first}): fix them first")
                return 2
        outcomes = []
        for i, mutant in enumerate(chosen, 1):
            outcome = run_mutant(tree, mutant, args.seed, args.timeout, args.logs)
            outcomes.append(outcome)
            print(
                f"[{i}/{len(chosen)}] {mutant.name}: {outcome.status} "
                f"({outcome.by}) {outcome.seconds:.0f} s",
                flush=True,
            )
    report = table(outcomes)
    print(report)
    if args.report is not None:
        args.report.write_text(report + "\n")
    bad = [o for o in outcomes if o.status in ("survived", "stale", "error")]
    wrong = [o for o in outcomes if o.status == "killed" and o.mutant.equivalent is not None]
    for o in wrong:
        print(f"{o.mutant.name} is documented as equivalent but {o.by} kills it")
    print(
        f"{sum(o.status == 'killed' for o in outcomes)} killed, "
        f"{sum(o.status == 'equivalent' for o in outcomes)} equivalent, "
        f"{len(bad)} survived, stale or in error"
    )
    return 1 if bad or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
