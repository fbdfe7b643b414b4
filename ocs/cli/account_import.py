"""``ocs account import FILE.csv``: create many accounts, pipelined over one connection.

The CSV file has a header row naming its columns: ``account_id`` (required), ``msisdn``,
``imsi`` (one identity each, empty for none; a leading ``+`` of an MSISDN is removed by the
server), ``balance`` and ``credit_limit`` (exact decimal units, or micro-units with ``--micro``;
empty for 0). Each row is one CREATE (WIRE.md section 8); up to ``--window`` of them are in
flight at once on one connection, so the server journals them in shared fsyncs (group commit)
instead of one connection, one capabilities exchange and one fsync per account.

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
from typing import Final, TextIO

from ocs.cli.args import tls_client_config
from ocs.cli.config import ClientSettings
from ocs.edge.client import Client, ClientError, Exchange
from ocs.edge.tls import TlsConfigError, client_context
from protocol.codes import AccountOperation, ApplicationId, SubscriptionIdType
from protocol.messages import AMR, SubscriptionId

DEFAULT_WINDOW: Final = 512
COLUMNS: Final = ("account_id", "msisdn", "imsi", "balance", "credit_limit")
_EXISTS: Final = "an account with this Account-Id exists already"


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    client_keys: tuple[str, ...],
) -> None:
    parser = sub.add_parser(
        "import",
        parents=[common],
        help="create the accounts of a CSV file, pipelined over one connection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE.csv")
    parser.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        metavar="N",
        help=f"CREATEs in flight at once (default {DEFAULT_WINDOW})",
    )
    parser.set_defaults(settings=ClientSettings(parser, client_keys), account_id="-")
    parser.set_defaults(func=run_import, operation=AccountOperation.CREATE)


@dataclass(slots=True)
class Tally:
    created: int = 0
    existed: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


def read_requests(
    path: Path, *, origin_host: str, origin_realm: str, micro: bool
) -> Iterator[tuple[int, AMR]]:
    """(line number, CREATE) per row; raises `ValueError` naming the line of a bad row."""
    from ocs.cli.account import parse_amount  # here: account imports this module

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        names = reader.fieldnames or []
        unknown = [n for n in names if n not in COLUMNS]
        if "account_id" not in names or unknown:
            raise ValueError(
                f"{path}: the header must name account_id and only {', '.join(COLUMNS)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        for row in reader:
            line = reader.line_num
            try:
                subs = []
                if row.get("msisdn"):
                    subs.append(
                        SubscriptionId(
                            subscription_id_type=SubscriptionIdType.END_USER_E164,
                            subscription_id_data=row["msisdn"].strip(),
                        )
                    )
                if row.get("imsi"):
                    subs.append(
                        SubscriptionId(
                            subscription_id_type=SubscriptionIdType.END_USER_IMSI,
                            subscription_id_data=row["imsi"].strip(),
                        )
                    )
                balance = row.get("balance") or "0"
                limit = row.get("credit_limit") or "0"
                yield (
                    line,
                    AMR(
                        origin_host=origin_host,
                        origin_realm=origin_realm,
                        account_operation=AccountOperation.CREATE,
                        account_id=row["account_id"],
                        subscription_id=tuple(subs) or None,
                        amount=parse_amount(balance, micro=micro, signed=True),
                        credit_limit=parse_amount(limit, micro=micro),
                    ),
                )
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None


async def pipeline(
    client: Client, requests: Iterator[tuple[int, AMR]], *, window: int, timeout: float
) -> Tally:
    """Send every request with at most ``window`` unanswered; tally the answers."""
    tally = Tally()
    room = asyncio.Semaphore(window)
    pending: set[asyncio.Future[Exchange]] = set()

    def answered(line: int, fut: asyncio.Future[Exchange]) -> None:
        pending.discard(fut)
        room.release()
        if fut.cancelled() or fut.exception() is not None:
            return
        answer = fut.result().answer
        if answer.result_code == 2001:
            tally.created += 1
        elif answer.error_message == _EXISTS:
            tally.existed += 1
        else:
            tally.refused += 1
            failed = f" Failed-AVP {json.dumps(answer.failed_avp)}" if answer.failed_avp else ""
            tally.errors.append(
                f"line {line}: Result-Code {answer.result_code}: {answer.error_message}{failed}"
            )

    for line, request in requests:
        await asyncio.wait_for(room.acquire(), timeout)
        fut = client.send(request)
        pending.add(fut)
        fut.add_done_callback(functools.partial(answered, line))
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
    if args.window < 1:
        print("error: --window must be at least 1", file=stderr)
        return EXIT_NO_ANSWER
    try:
        tls = tls_client_config(args)
        context = client_context(tls) if tls is not None else None
        # read and check the whole file first: a malformed row sends nothing
        requests = list(
            read_requests(
                args.file, origin_host=origin_host, origin_realm=args.origin_realm, micro=args.micro
            )
        )
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
        try:
            return await pipeline(client, iter(requests), window=args.window, timeout=args.timeout)
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
        "rows": len(requests),
        "created": tally.created,
        "existed": tally.existed,
        "refused": tally.refused,
        "seconds": round(elapsed_s, 3),
    }
    if args.json:
        print(json.dumps(summary), file=stdout)
    else:
        rate = len(requests) / elapsed_s if elapsed_s > 0 else 0.0
        print(
            f"imported {args.file}: {tally.created} created, {tally.existed} existed, "
            f"{tally.refused} refused of {len(requests)} rows in {elapsed_s:.1f} s "
            f"({rate:,.0f} rows/s)",
            file=stdout,
        )
    return EXIT_OK if tally.refused == 0 else EXIT_REFUSED
