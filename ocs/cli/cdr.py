"""``ocs cdr rotate`` and ``ocs cdr show``: CDR hand-off for operators (docs/cdr-files.md).

``rotate`` asks a running server to close its current CDR file now (WIRE.md section 8 with the
CDR_ROTATE extension, docs/protocol.md): the file gets its complete name
``cdr-<first>-<last>.jsonl`` and holds every CDR of every request answered before; the command
prints that name. SIGUSR1 to the server does the same, and so does a clean stop.

``show`` renders CDR files (complete or current; a directory means every CDR file in it) as a
table a person reads: money in currency units (exact), rating groups and currencies by name.
The names come from ``--catalog FILE``, else from the built-in demo catalog; a rating group the
catalog does not name is shown as ``RG <n>``, a currency it does not name by its ISO 4217
letters when they are known here, else by its number. ``--csv`` and ``--json`` (one object a
line) give the same rows for programs.

Exit status: 0 done; 1 the server refused (rotate) or a file is damaged (show); 2 no answer,
a file that cannot be read, or a wrong command line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from ocs.cli.account import (
    CLIENT_KEYS,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_REFUSED,
    default_origin_host,
    send_request,
    server_options,
)
from ocs.cli.args import tls_client_config
from ocs.cli.config import ClientSettings
from ocs.edge.catalog_files import load_catalog_file
from ocs.edge.cdr_files import CdrCorruptError, cdr_files, iter_file_records
from ocs.edge.tls import TlsConfigError, client_context
from protocol.codes import AccountOperation
from protocol.messages import AMA, AMR
from rating import Catalog, CatalogError, format_exact

# ISO 4217 letters of common currencies, for CDRs in a currency the catalog does not name.
_ISO_4217: Final = {
    36: "AUD",
    124: "CAD",
    156: "CNY",
    208: "DKK",
    392: "JPY",
    578: "NOK",
    752: "SEK",
    756: "CHF",
    826: "GBP",
    840: "USD",
    978: "EUR",
    985: "PLN",
}
_MIB: Final = 1 << 20
_KIB: Final = 1 << 10
ROTATE_ACCOUNT_ID: Final = "cdr"
"""The `Account-Id` `ocs cdr rotate` sends: section 8 requires one, CDR_ROTATE ignores it."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cdr",
        help="hand CDR files off: rotate a running server's current file, show CDRs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cdr_command", required=True)

    rotate = sub.add_parser(
        "rotate",
        parents=[server_options()],
        help="close the running server's current CDR file now (as SIGUSR1 does)",
    )
    rotate.set_defaults(func=run_rotate, settings=ClientSettings(rotate, CLIENT_KEYS))

    show = sub.add_parser("show", help="render CDR files as a table (or CSV, or JSON lines)")
    show.add_argument(
        "files",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="CDR files (complete or current); a directory means all its CDR files",
    )
    show.add_argument(
        "--subscriber",
        action="append",
        default=[],
        metavar="ID",
        help="only records whose servedSubscriber or accountId is ID (repeatable)",
    )
    show.add_argument(
        "--since",
        type=parse_since,
        default=None,
        metavar="TIME",
        help="only records closed at or after TIME (ISO 8601; UTC unless it has an offset)",
    )
    show.add_argument(
        "--catalog",
        type=Path,
        default=None,
        metavar="FILE",
        help="the catalog whose rating-group and currency names to use (default: the demo catalog)",
    )
    form = show.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="CSV with a header line")
    form.add_argument("--json", action="store_true", help="one JSON object a line")
    show.set_defaults(func=run_show)


# --- rotate ------------------------------------------------------------------------------------


def run_rotate(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    origin_host = args.origin_host or default_origin_host()
    try:
        tls = tls_client_config(args)
        context = client_context(tls) if tls is not None else None
    except (ValueError, TlsConfigError) as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_NO_ANSWER
    request = AMR(
        origin_host=origin_host,
        origin_realm=args.origin_realm,
        account_operation=AccountOperation.CDR_ROTATE,
        account_id=ROTATE_ACCOUNT_ID,
    )
    outcome = send_request(args, request, origin_host, tls, context)
    answer = outcome.answer
    cdr_file = answer.cdr_file if isinstance(answer, AMA) else None
    if answer is None:
        code = EXIT_NO_ANSWER
    else:
        code = EXIT_OK if outcome.result_code == 2001 else EXIT_REFUSED
    if args.json:
        obj: dict[str, Any] = {"Account-Operation": "CDR_ROTATE"}
        obj["Result-Code"] = outcome.result_code if answer is not None else None
        if answer is None:
            obj["error"] = outcome.error
        else:
            if answer.error_message is not None:
                obj["Error-Message"] = answer.error_message
            obj["Cdr-File"] = cdr_file
        print(json.dumps(obj), file=stdout)
    elif answer is None:
        print(f"error: {outcome.error}", file=stderr)
    elif code != EXIT_OK:
        detail = f": {answer.error_message}" if answer.error_message else ""
        print(f"cdr rotate: Result-Code {outcome.result_code} refused{detail}", file=stderr)
    elif cdr_file is None:
        print("cdr rotate: nothing to rotate (the current file is empty)", file=stdout)
    else:
        print(f"cdr rotate: completed {cdr_file}", file=stdout)
    return code


# --- show --------------------------------------------------------------------------------------


def parse_since(text: str) -> datetime:
    """An ISO 8601 date or date-time; UTC unless it carries an offset."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Names:
    """Rating-group and currency names for display (`names_from`)."""

    rating_groups: dict[int, str]
    currencies: dict[int, str]

    def rating_group(self, rg: int) -> str:
        return self.rating_groups.get(rg, f"RG {rg}")

    def currency(self, code: object) -> str:
        if type(code) is not int:
            return "?"
        return self.currencies.get(code, str(code))


def names_from(catalog: Catalog) -> Names:
    currencies = dict(_ISO_4217)
    if catalog.currency.alpha:
        currencies[catalog.currency.code] = catalog.currency.alpha
    return Names(
        rating_groups={rg.id: rg.name for rg in catalog.rating_groups.values()},
        currencies=currencies,
    )


@dataclass(frozen=True, slots=True)
class Usage:
    rating_group: int
    name: str
    unit: str  # "octets", "seconds", "units"
    units: int
    charge: int  # micro-units


@dataclass(frozen=True, slots=True)
class Row:
    file: str
    seq: int
    closed: str
    record_type: str
    action: str | None
    subscriber: str
    account: str
    session: str
    node: str
    cause: str
    usage: tuple[Usage, ...]
    charge: int  # micro-units
    currency: str


_UNIT_KEYS: Final = (
    ("totalVolume", "octets"),
    ("time", "seconds"),
    ("serviceSpecificUnits", "units"),
)


def _usage(record: dict[str, Any], names: Names) -> tuple[Usage, ...]:
    units: Counter[int] = Counter()
    charges: Counter[int] = Counter()
    kinds: dict[int, str] = {}
    for mu in record.get("listOfMultipleUnitUsage") or ():
        rg = int(mu["ratingGroup"])
        for container in mu.get("usedUnitContainers") or ():
            for key, unit in _UNIT_KEYS:
                value = container.get(key)
                if value is not None:
                    units[rg] += int(value)
                    kinds[rg] = unit
                    break
            charges[rg] += int(container.get("charge", 0))
    return tuple(
        Usage(rg, names.rating_group(rg), kinds.get(rg, "units"), units[rg], charges[rg])
        for rg in sorted(set(units) | set(charges))
    )


def _row(file: str, record: dict[str, Any], names: Names) -> Row:
    return Row(
        file=file,
        seq=int(record["recordSequenceNumber"]),
        closed=str(record.get("recordClosingTime", "")),
        record_type=str(record.get("recordType", "")),
        action=record.get("requestedAction"),
        subscriber=str(record.get("servedSubscriber", "")),
        account=str(record.get("accountId", "")),
        session=str(record.get("sessionId", "")),
        node=str(record.get("nodeId", "")),
        cause=str(record.get("causeForRecordClosing", "")),
        usage=_usage(record, names),
        charge=int(record.get("charge", 0)),
        currency=names.currency(record.get("currencyCode")),
    )


def _closed_at(text: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _paths(files: Sequence[Path]) -> Iterator[Path]:
    for path in files:
        if path.is_dir():
            yield from cdr_files(path)
        else:
            yield path


def select_rows(
    files: Sequence[Path],
    names: Names,
    *,
    subscribers: Iterable[str] = (),
    since: datetime | None = None,
) -> Iterator[Row]:
    """The rows of the records of ``files`` that pass the filters, in file order."""
    wanted = set(subscribers)
    for path in _paths(files):
        for record in iter_file_records(path):
            row = _row(path.name, record, names)
            if wanted and row.subscriber not in wanted and row.account not in wanted:
                continue
            if since is not None:
                closed = _closed_at(row.closed)
                if closed is None or closed < since:
                    continue
            yield row


def units_text(unit: str, units: int) -> str:
    """Units for a person, by integer arithmetic (two decimals, rounded down)."""
    if unit == "octets":
        for step, suffix in ((_MIB, "MiB"), (_KIB, "KiB")):
            if units >= step:
                hundredths = units * 100 // step
                return f"{hundredths // 100}.{hundredths % 100:02d} {suffix}"
        return f"{units} B"
    if unit == "seconds":
        minutes, seconds = divmod(units, 60)
        return f"{minutes}:{seconds:02d} min" if minutes else f"{seconds} s"
    return f"{units} unit{'s' if units != 1 else ''}"


def _type_text(row: Row) -> str:
    if row.record_type == "event" and row.action:
        return "refund" if row.action == "REFUND_ACCOUNT" else "debit"
    return row.record_type


def _table(rows: Iterable[Row], out: TextIO) -> int:
    header = ("SEQ", "CLOSED (UTC)", "TYPE", "SUBSCRIBER", "ACCOUNT", "CAUSE", "USAGE", "CHARGE")
    lines: list[tuple[str, ...]] = []
    totals: dict[str, int] = {}
    count = 0
    for row in rows:
        count += 1
        usage = ", ".join(f"{u.name} {units_text(u.unit, u.units)}" for u in row.usage) or "-"
        closed = row.closed.replace("T", " ").removesuffix("Z")
        lines.append(
            (
                str(row.seq),
                closed,
                _type_text(row),
                row.subscriber,
                row.account,
                row.cause,
                usage,
                f"{format_exact(row.charge)} {row.currency}",
            )
        )
        totals[row.currency] = totals.get(row.currency, 0) + row.charge
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(header)]
    right = {0, 7}
    for line in (header, *lines):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        print("  ".join(cells).rstrip(), file=out)
    total = ", ".join(f"{format_exact(m)} {c}" for c, m in sorted(totals.items())) or "0"
    print(f"{count} record{'s' if count != 1 else ''}, charge {total}", file=out)
    return count


_CSV_HEADER: Final = (
    "file",
    "recordSequenceNumber",
    "recordClosingTime",
    "recordType",
    "requestedAction",
    "servedSubscriber",
    "accountId",
    "sessionId",
    "nodeId",
    "causeForRecordClosing",
    "usage",
    "charge",
    "currency",
    "chargeMicro",
)


def _csv(rows: Iterable[Row], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_HEADER)
    for row in rows:
        usage = "; ".join(f"{u.name}={u.units} {u.unit}" for u in row.usage)
        writer.writerow(
            (
                row.file,
                row.seq,
                row.closed,
                row.record_type,
                row.action or "",
                row.subscriber,
                row.account,
                row.session,
                row.node,
                row.cause,
                usage,
                format_exact(row.charge),
                row.currency,
                row.charge,
            )
        )


def _json_lines(rows: Iterable[Row], out: TextIO) -> None:
    for row in rows:
        obj = {
            "file": row.file,
            "recordSequenceNumber": row.seq,
            "recordClosingTime": row.closed,
            "recordType": row.record_type,
            "requestedAction": row.action,
            "servedSubscriber": row.subscriber,
            "accountId": row.account,
            "sessionId": row.session,
            "nodeId": row.node,
            "causeForRecordClosing": row.cause,
            "usage": [
                {
                    "ratingGroup": u.rating_group,
                    "name": u.name,
                    "unit": u.unit,
                    "units": u.units,
                    "charge": format_exact(u.charge),
                }
                for u in row.usage
            ],
            "charge": format_exact(row.charge),
            "currency": row.currency,
            "chargeMicro": row.charge,
        }
        print(json.dumps(obj), file=out)


def run_show(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    try:
        names = names_from(load_catalog_file(args.catalog))
    except CatalogError as exc:
        print(f"ocs cdr show: {exc}", file=stderr)
        return EXIT_NO_ANSWER
    rows = select_rows(args.files, names, subscribers=args.subscriber, since=args.since)
    try:
        if args.csv:
            _csv(rows, stdout)
        elif args.json:
            _json_lines(rows, stdout)
        else:
            _table(rows, stdout)
    except BrokenPipeError:  # `| head`: the reader has seen enough
        if out is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except CdrCorruptError as exc:
        print(f"ocs cdr show: {exc}", file=stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"ocs cdr show: {exc}", file=stderr)
        return EXIT_NO_ANSWER
    return EXIT_OK
