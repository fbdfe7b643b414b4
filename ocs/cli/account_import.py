"""``ocs account import FILE``: create many accounts, pipelined over one connection.

The file is CSV (a header row naming its columns) or JSON Lines (``.jsonl``/``.ndjson``, or
``--format jsonl``: one object a line, keyed by the same names). Columns: ``account_id``
(required), ``msisdn``, ``imsi`` (one identity each, empty or absent for none; a leading ``+``
of an MSISDN is removed by the server), ``balance`` and ``credit_limit`` (exact decimal units,
or micro-units with ``--micro``; empty or absent for 0; in JSON Lines a string or an integer).

Rows are sent in batches of up to ``--batch`` accounts (128, the most a request carries), each
batch one CREATE_BULK (docs/protocol.md, *Extension: bulk create*; each account created or
refused on its own, as a CREATE would be), and up to ``--window`` batches are in flight at once
on one connection, so the server journals them in shared fsyncs (group commit). ``--batch 1``
sends one CREATE per row instead (for a server without CREATE_BULK).

A CREATE of an Account-Id that exists already is counted as ``existed``, not as a failure, so
an import that was interrupted is completed by running it again. Other refusals are printed
with their line number, Result-Code and ``Error-Message`` on stderr.

Exit status: 0 when every row was created or existed; 1 when the server refused a row; 2 when
the file is unreadable or malformed (nothing is sent), or the connection failed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import msgspec

from ocs.cli.args import tls_client_config
from ocs.cli.config import ClientSettings
from ocs.edge.client import Client, ClientError, Exchange
from ocs.edge.tls import TlsConfigError, client_context
from protocol.codes import AccountOperation, ApplicationId, SubscriptionIdType
from protocol.limits import MAX_BULK_ACCOUNTS
from protocol.messages import AMA, AMR, BulkAccount, SubscriptionId

DEFAULT_WINDOW: Final = 32  # requests in flight (x 128 accounts: ~0.8 MB of bodies)
DEFAULT_SINGLE_WINDOW: Final = 512  # with --batch 1
DEFAULT_BATCH: Final = MAX_BULK_ACCOUNTS
COLUMNS: Final = ("account_id", "msisdn", "imsi", "balance", "credit_limit")
_EXISTS: Final = "an account with this Account-Id exists already"
#: A batch is sent once its accounts' text would pass this many bytes (the server's default
#: message limit is 65,536 bytes; a row is at most ~770 bytes of text and ~130 of keys).
_BATCH_BYTES: Final = 40_000
_ENTRY_OVERHEAD: Final = 160  # keys and ints of one Bulk-Account, either encoding
_JSONL_SUFFIXES: Final = (".jsonl", ".ndjson")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    client_keys: tuple[str, ...],
) -> None:
    parser = sub.add_parser(
        "import",
        parents=[common],
        help="create the accounts of a CSV or JSON Lines file, pipelined over one connection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        default=None,
        help="the file's format (default: jsonl for .jsonl/.ndjson, else csv)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"accounts per request (1..{MAX_BULK_ACCOUNTS}, default {DEFAULT_BATCH}; "
        "1: one CREATE each)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="N",
        help=f"requests in flight at once (default {DEFAULT_WINDOW}; "
        f"{DEFAULT_SINGLE_WINDOW} with --batch 1)",
    )
    parser.set_defaults(settings=ClientSettings(parser, client_keys), account_id="-")
    parser.set_defaults(func=run_import, operation=AccountOperation.CREATE)


@dataclass(slots=True)
class Tally:
    created: int = 0
    existed: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


class Row(msgspec.Struct, frozen=True):
    """One account to create and the line of the file it came from."""

    line: int
    account: BulkAccount
    size: int  # bytes of its text (for the batch bound)


def _text(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a string or an integer, got {value!r}")
    return str(value)


_E164: Final = SubscriptionIdType.END_USER_E164
_IMSI: Final = SubscriptionIdType.END_USER_IMSI


class _Rows:
    """Rows from values, with the amounts of a file parsed once per distinct text (a file
    repeats a few balances: parsing each again is most of the cost of a row)."""

    def __init__(self, micro: bool) -> None:
        from ocs.cli.account import parse_amount  # here: account imports this module

        self.micro = micro
        self.parse = parse_amount
        self.amounts: dict[tuple[str, bool], int] = {}

    def amount(self, text: str, signed: bool) -> int:
        key = (text, signed)
        value = self.amounts.get(key)
        if value is None:
            value = self.parse(text, micro=self.micro, signed=signed)
            if len(self.amounts) < 1024:
                self.amounts[key] = value
        return value

    def row(self, line: int, values: dict[str, Any]) -> Row:
        account_id = _text(values.get("account_id"))
        if not account_id:
            raise ValueError("account_id is empty")
        msisdn = _text(values.get("msisdn"))
        imsi = _text(values.get("imsi"))
        subs: tuple[SubscriptionId, ...] | None = None
        if msisdn or imsi:
            subs = tuple(
                SubscriptionId(subscription_id_type=kind, subscription_id_data=data)
                for kind, data in ((_E164, msisdn), (_IMSI, imsi))
                if data
            )
        account = BulkAccount(
            account_id=account_id,
            subscription_id=subs,
            amount=self.amount(_text(values.get("balance")) or "0", True),
            credit_limit=self.amount(_text(values.get("credit_limit")) or "0", False),
        )
        return Row(line, account, len(account_id) + len(msisdn) + len(imsi) + _ENTRY_OVERHEAD)


def read_rows(path: Path, *, micro: bool, jsonl: bool | None = None) -> Iterator[Row]:
    """The accounts of a CSV or JSON Lines file (`jsonl` None: by its suffix); raises
    `ValueError` naming the line of a bad row."""
    if jsonl is None:
        jsonl = path.suffix.lower() in _JSONL_SUFFIXES
    rows = _Rows(micro)
    with path.open(newline="" if not jsonl else None, encoding="utf-8") as f:
        if jsonl:
            decoder = msgspec.json.Decoder(dict[str, Any])
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    values = decoder.decode(text)
                    unknown = [k for k in values if k not in COLUMNS]
                    if unknown:
                        raise ValueError(f"unknown keys {', '.join(unknown)}")
                    yield rows.row(line, values)
                except (ValueError, TypeError, msgspec.DecodeError) as exc:
                    raise ValueError(f"{path}:{line}: {exc}") from None
            return
        reader = csv.reader(f)
        names = next(reader, [])
        unknown = [n for n in names if n not in COLUMNS]
        if "account_id" not in names or unknown:
            raise ValueError(
                f"{path}: the header must name account_id and only {', '.join(COLUMNS)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        for cells in reader:
            line = reader.line_num
            if not cells:
                continue
            try:
                if len(cells) > len(names):
                    raise ValueError(f"{len(cells)} cells, the header names {len(names)}")
                yield rows.row(line, dict(zip(names, cells, strict=False)))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None


def _create(account: BulkAccount, origin_host: str, origin_realm: str) -> AMR:
    return AMR(
        origin_host=origin_host,
        origin_realm=origin_realm,
        account_operation=AccountOperation.CREATE,
        account_id=account.account_id,
        subscription_id=account.subscription_id,
        amount=account.amount,
        credit_limit=account.credit_limit,
    )


def batches(
    rows: list[Row], *, size: int, origin_host: str, origin_realm: str
) -> Iterator[tuple[list[Row], AMR]]:
    """The requests for `rows`: one CREATE per row (`size` 1), else CREATE_BULKs of at most
    `size` accounts and `_BATCH_BYTES` of text."""
    if size == 1:
        for row in rows:
            yield [row], _create(row.account, origin_host, origin_realm)
        return
    batch: list[Row] = []
    used = 0
    for row in rows:
        if batch and (len(batch) == size or used + row.size > _BATCH_BYTES):
            yield batch, _bulk(batch, origin_host, origin_realm)
            batch, used = [], 0
        batch.append(row)
        used += row.size
    if batch:
        yield batch, _bulk(batch, origin_host, origin_realm)


def _bulk(batch: list[Row], origin_host: str, origin_realm: str) -> AMR:
    return AMR(
        origin_host=origin_host,
        origin_realm=origin_realm,
        account_operation=AccountOperation.CREATE_BULK,
        account_id=batch[0].account.account_id,  # required by WIRE.md 8; ignored
        bulk_account=tuple(r.account for r in batch),
    )


def _refusal(tally: Tally, line: int, code: int, message: str | None, failed: str = "") -> None:
    if message == _EXISTS:
        tally.existed += 1
        return
    tally.refused += 1
    tally.errors.append(f"line {line}: Result-Code {code}: {message}{failed}")


async def pipeline(
    client: Client,
    requests: Iterator[tuple[list[Row], AMR]],
    *,
    window: int,
    timeout: float,
) -> Tally:
    """Send every request with at most ``window`` unanswered; tally the answers."""
    tally = Tally()
    room = asyncio.Semaphore(window)
    pending: set[asyncio.Future[Exchange]] = set()

    def answered(rows: list[Row], fut: asyncio.Future[Exchange]) -> None:
        pending.discard(fut)
        room.release()
        if fut.cancelled() or fut.exception() is not None:
            return
        answer = fut.result().answer
        if answer.result_code != 2001:  # the whole request refused
            failed = f" Failed-AVP {json.dumps(answer.failed_avp)}" if answer.failed_avp else ""
            for row in rows:
                _refusal(tally, row.line, answer.result_code, answer.error_message, failed)
            return
        refused = answer.bulk_result if isinstance(answer, AMA) else None
        if not refused:
            tally.created += len(rows)
            return
        lines = {row.account.account_id: row.line for row in rows}
        tally.created += len(rows) - len(refused)
        for result in refused:
            line = lines.get(result.account_id, 0)
            _refusal(tally, line, result.result_code, result.error_message)

    for rows, request in requests:
        await asyncio.wait_for(room.acquire(), timeout)
        fut = client.send(request)
        pending.add(fut)
        fut.add_done_callback(functools.partial(answered, rows))
    if pending:
        await asyncio.wait_for(asyncio.gather(*pending), timeout)
    return tally


def run_import(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    from ocs.cli.account import (  # here: account imports this module
        EXIT_NO_ANSWER,
        EXIT_OK,
        EXIT_REFUSED,
        default_origin_host,
    )

    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    origin_host = args.origin_host or default_origin_host()
    host, port = args.server
    window = args.window
    if window is None:
        window = DEFAULT_SINGLE_WINDOW if args.batch == 1 else DEFAULT_WINDOW
    if window < 1:
        print("error: --window must be at least 1", file=stderr)
        return EXIT_NO_ANSWER
    if not 1 <= args.batch <= MAX_BULK_ACCOUNTS:
        print(f"error: --batch must be 1 to {MAX_BULK_ACCOUNTS}", file=stderr)
        return EXIT_NO_ANSWER
    jsonl = None if args.format is None else args.format == "jsonl"
    try:
        tls = tls_client_config(args)
        context = client_context(tls) if tls is not None else None
        # read and check the whole file first: a malformed row sends nothing
        rows = list(read_rows(args.file, micro=args.micro, jsonl=jsonl))
    except (OSError, ValueError, TlsConfigError) as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_NO_ANSWER

    async def go() -> Tally | str:
        try:
            client = await Client.connect(
                host,
                port,
                origin_host=origin_host,
                origin_realm=args.origin_realm,
                applications=(ApplicationId.ADMINISTRATION,),
                timeout=args.timeout,
                product_name="ocs-account",
                ssl=context,
                server_hostname=tls.hostname(host) if tls is not None else None,
            )
        except (OSError, TimeoutError, ClientError) as exc:
            return f"cannot connect to {host}:{port}: {exc or type(exc).__name__}"
        requests = batches(
            rows, size=args.batch, origin_host=origin_host, origin_realm=args.origin_realm
        )
        try:
            return await pipeline(client, requests, window=window, timeout=args.timeout)
        except (OSError, TimeoutError, ClientError) as exc:
            return f"import interrupted ({exc or type(exc).__name__}): run it again to finish"
        finally:
            await client.close(timeout=min(args.timeout, 2.0))

    started = time.perf_counter()
    tally = asyncio.run(go())
    elapsed_s = time.perf_counter() - started
    if isinstance(tally, str):
        print(f"error: {tally}", file=stderr)
        return EXIT_NO_ANSWER
    for line in tally.errors:
        print(line, file=stderr)
    summary = {
        "rows": len(rows),
        "created": tally.created,
        "existed": tally.existed,
        "refused": tally.refused,
        "seconds": round(elapsed_s, 3),
    }
    if args.json:
        print(json.dumps(summary), file=stdout)
    else:
        rate = len(rows) / elapsed_s if elapsed_s > 0 else 0.0
        print(
            f"imported {args.file}: {tally.created} created, {tally.existed} existed, "
            f"{tally.refused} refused of {len(rows)} rows in {elapsed_s:.1f} s "
            f"({rate:,.0f} rows/s)",
            file=stdout,
        )
    return EXIT_OK if tally.refused == 0 else EXIT_REFUSED
