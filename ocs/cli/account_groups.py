"""``ocs account group-join|group-leave|statement``: shared group packages (docs/accounts.md).

``group-join MEMBER GROUP [--package NAME]`` makes the account MEMBER a member of the group
account GROUP (the first member names the catalog package the group owns); from then on the
usage of MEMBER's subscribers is charged to GROUP. ``group-leave MEMBER`` ends it. Both carry an
``Operation-Id`` (``--operation-id``, else a fresh UUID that is printed) so that a retry is
applied once.

``statement MEMBER [--period WHEN]`` prints the member's statement of a period: per service the
units used, the money charged for them and the member's share of the package fee; then the
totals. WHEN is an instant inside the period (ISO 8601 date or date-time, or epoch seconds);
without it, the member's latest closed period (else its open one, which has no share yet).

Exit status as ``ocs account``: 0 on 2001, 1 on another Result-Code, 2 without an answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from ocs.cli.account import (
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_REFUSED,
    default_origin_host,
    money,
    send_request,
)
from ocs.cli.args import tls_client_config
from ocs.cli.config import ClientSettings
from ocs.edge.logs import result_code_name
from ocs.edge.tls import TlsConfigError, client_context
from protocol.codes import AccountOperation
from protocol.messages import AMA, AMR, Answer

_ONCE_HELP = (
    "applied once however often sent (default: a new UUID, printed so that the command can be "
    "retried with it)"
)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    client_keys: tuple[str, ...],
) -> None:
    join = sub.add_parser(
        "group-join", parents=[common], help="make an account a member of a group account"
    )
    join.add_argument("account_id", metavar="MEMBER")
    join.add_argument("group_account_id", metavar="GROUP")
    join.add_argument(
        "--package", default=None, metavar="NAME", help="the catalog package (first member)"
    )
    join.add_argument("--operation-id", default=None, metavar="ID", help=_ONCE_HELP)
    join.set_defaults(settings=ClientSettings(join, client_keys))
    join.set_defaults(func=run, operation=AccountOperation.GROUP_JOIN)

    leave = sub.add_parser("group-leave", parents=[common], help="end an account's membership")
    leave.add_argument("account_id", metavar="MEMBER")
    leave.add_argument("--operation-id", default=None, metavar="ID", help=_ONCE_HELP)
    leave.set_defaults(settings=ClientSettings(leave, client_keys))
    leave.set_defaults(func=run, operation=AccountOperation.GROUP_LEAVE)

    statement = sub.add_parser(
        "statement", parents=[common], help="a group member's statement of a period"
    )
    statement.add_argument("account_id", metavar="MEMBER")
    statement.add_argument(
        "--period",
        type=parse_instant,
        default=None,
        metavar="WHEN",
        help="an instant in the period: ISO 8601 (UTC unless an offset is given) or epoch "
        "seconds (default: the latest closed period)",
    )
    statement.set_defaults(settings=ClientSettings(statement, client_keys))
    statement.set_defaults(func=run, operation=AccountOperation.STATEMENT)


def parse_instant(text: str) -> int:
    """Epoch seconds of ``2026-11-15``, ``2026-11-15T12:00:00+01:00`` or ``1794740400``."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an instant: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def build_request(args: argparse.Namespace, origin_host: str) -> AMR:
    op: AccountOperation = args.operation
    fields: dict[str, Any] = {}
    if op is AccountOperation.GROUP_JOIN:
        fields["group_account_id"] = args.group_account_id
        fields["package_name"] = args.package
    if op is AccountOperation.STATEMENT:
        fields["period_start"] = args.period
    else:
        fields["operation_id"] = args.operation_id
    return AMR(
        origin_host=origin_host,
        origin_realm=args.origin_realm,
        account_operation=op,
        account_id=args.account_id,
        **fields,
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    origin_host = args.origin_host or default_origin_host()
    op: AccountOperation = args.operation
    fresh_id = op is not AccountOperation.STATEMENT and args.operation_id is None
    if fresh_id:
        args.operation_id = str(uuid.uuid4())
    try:
        tls = tls_client_config(args)
        context = client_context(tls) if tls is not None else None
    except TlsConfigError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_NO_ANSWER
    if fresh_id and not args.json:
        print(f"operation id {args.operation_id}", file=stderr)
    outcome = send_request(args, build_request(args, origin_host), origin_host, tls, context)
    answer = outcome.answer
    if answer is None:
        if args.json:
            print(json.dumps({"Result-Code": None, "error": outcome.error}), file=stdout)
        else:
            print(f"error: {outcome.error}", file=stderr)
        return EXIT_NO_ANSWER
    ok = outcome.result_code == 2001
    if args.json:
        print(json.dumps(_json(args, answer)), file=stdout)
    else:
        print(_human(args, answer), file=stdout if ok else stderr)
    return EXIT_OK if ok else EXIT_REFUSED


def _json(args: argparse.Namespace, answer: Answer) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "Account-Operation": args.operation.name,
        "Account-Id": args.account_id,
        "Result-Code": answer.result_code,
    }
    if getattr(args, "operation_id", None) is not None:
        obj["Operation-Id"] = args.operation_id
    for key, value in (
        ("Error-Message", answer.error_message),
        ("Failed-AVP", answer.failed_avp),
    ):
        if value is not None:
            obj[key] = value
    if isinstance(answer, AMA) and answer.statement is not None:
        obj["Statement"] = msgspec.to_builtins(answer.statement)
    return obj


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _human(args: argparse.Namespace, answer: Answer) -> str:
    op: AccountOperation = args.operation
    name = op.name.lower().replace("_", "-")
    if answer.result_code != 2001:
        detail = f": {answer.error_message}" if answer.error_message else ""
        failed = f" Failed-AVP {json.dumps(answer.failed_avp)}" if answer.failed_avp else ""
        return (
            f"{name} {args.account_id}: Result-Code {answer.result_code} "
            f"{result_code_name(answer.result_code)}{detail}{failed}"
        )
    statement = answer.statement if isinstance(answer, AMA) else None
    if statement is None:
        return f"{name} {args.account_id}: ok"
    state = "open" if statement.share is None else "closed"
    lines = [
        f"statement {args.account_id}: group {statement.group_account_id} package "
        f"{statement.package_name} {_iso(statement.period_start)} .. "
        f"{_iso(statement.period_end)} ({state})"
    ]
    for service in statement.statement_service:
        share = "-" if service.share is None else money(service.share)
        lines.append(
            f"  {service.service_name:<12} used {service.used_units:>16} "
            f"charged {money(service.usage_charge):>12} share {share:>12}"
        )
    total = "-" if statement.share is None else money(statement.share)
    lines.append(
        f"  {'total':<12} {'':>21} charged {money(statement.usage_charge):>12} share {total:>12}"
    )
    return "\n".join(lines)
