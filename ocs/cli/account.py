"""``ocs account create|get|credit|debit|status|terminate-session|update|close|list|search``,
``subscribe|unsubscribe|loan|group-join|group-leave|statement|history``: account administration
for operators.

Talks to a running server over the wire (WIRE.md section 8: Account-Management, application
``0x4F435341``) with `ocs.edge.client.Client`. Amounts are exact decimal currency units (``12.34``),
parsed digit by digit into int micro-units (never through float), or raw micro-units with
``--micro``.

CREDIT and DEBIT always carry an ``Operation-Id``: the one given with ``--operation-id``, else a
fresh UUID that is printed, so that an operator who did not see the answer (timeout, lost
connection, crash of the server) can run the same command again with ``--operation-id`` and be
sure it is applied once.

``update`` changes an account's status, credit limit and/or identities (``--msisdn``,
``--imsi``, ``--sub`` replace the whole set); ``close`` removes an account whose balance is zero
and that holds no session (both carry an ``Operation-Id`` like CREDIT and DEBIT). ``list`` prints
the Account-Ids in order (from ``--from``), one a line, a page of the server's at a time over one
connection; ``search TYPE:DATA`` shows the account holding an identity. ``history ACCOUNT_ID``
prints the account's last movements of money and units, newest first (``--limit N``, at most
100; ``--before SEQ`` for the page before movement SEQ): charges and refunds with the number of
their CDR, credits, debits, the opening balance (docs/protocol.md, *Extension: history*).

``subscribe ACCOUNT_ID OFFER`` takes an offer of the catalog (its first fee is paid from the
money balance, its allowances given at once) and ``unsubscribe`` gives it up (both carry an
``Operation-Id``); ``get`` lists every unit balance with what is left, held and when it expires.
``loan ACCOUNT_ID AMOUNT`` takes an airtime loan (the USSD or IVR request of a subscriber):
an amount the catalog's loan policy offers, while the balance is at or below its threshold;
it carries an ``Operation-Id`` like CREDIT. ``get`` then shows the loan balance and the loans
outstanding (principal + fee owed); the next top-ups repay them first.
``group-join``, ``group-leave`` and ``statement`` administer shared group packages
(`ocs.cli.account_groups`, docs/accounts.md).

``terminate-session`` ends one of the account's sessions, whichever peer opened it (management
intervention, docs/protocol.md): its reservations are released, its CDR is closed with cause
"managementIntervention", and the peer that owns it is sent ASR.

With ``--tls-ca`` (and ``--tls-cert``/``--tls-key`` for a server that requires client
certificates) it connects over TLS, checking the server's certificate for ``--tls-server-name``
(default: the host of ``--server``).

A refusal prints the Result-Code with its name, the server's ``Error-Message`` (which tells
the causes of one Result-Code apart: an existing Account-Id, a Subscription-Id of another
account, ...) and ``Failed-AVP`` (the key at fault).

Exit status: 0 when the server answered 2001; 1 when it answered with another Result-Code (5030
unknown account, 5004 invalid value, existing account or identity of another account, 4012 not
enough credit, 5002 no such session of that account, ...); 2 when no answer came (connection
refused or lost, timeout, capabilities exchange refused) or the command line is wrong (nothing
was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import msgspec

from ocs.cli.args import add_tls_client_arguments, server_address, tls_client_config
from ocs.cli.config import ClientSettings
from ocs.edge.client import Client, ClientError
from ocs.edge.logs import result_code_name
from ocs.edge.tls import TlsClientConfig, TlsConfigError, client_context
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    ApplicationId,
    CounterUnit,
    OfferStatus,
    SubscriptionIdType,
)
from protocol.limits import MAX_HISTORY_PAGE
from protocol.messages import AMA, AMR, Answer, SubscriptionId, UsageCounter
from rating import format_exact, parse_money

DEFAULT_SERVER: Final = "127.0.0.1:3868"
# read from the environment (OCS_SERVER, ...) and the client file too (`ocs.cli.config`)
CLIENT_KEYS: Final = (
    "server",
    "origin-host",
    "origin-realm",
    "tls-ca",
    "tls-cert",
    "tls-key",
    "tls-server-name",
)
DEFAULT_REALM: Final = "test.local"
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_NO_ANSWER: Final = 2

_SUB_TYPES: Final = {
    "e164": SubscriptionIdType.END_USER_E164,
    "msisdn": SubscriptionIdType.END_USER_E164,
    "imsi": SubscriptionIdType.END_USER_IMSI,
    "sip": SubscriptionIdType.END_USER_SIP_URI,
    "sip_uri": SubscriptionIdType.END_USER_SIP_URI,
    "nai": SubscriptionIdType.END_USER_NAI,
    "private": SubscriptionIdType.END_USER_PRIVATE,
}
_STATUS_NAMES: Final = {
    "active": AccountStatus.ACTIVE,
    "suspended": AccountStatus.SUSPENDED,
    "barred": AccountStatus.BARRED,
}


def default_origin_host() -> str:
    host = socket.gethostname().strip(".") or "localhost"
    return f"ocs-admin.{host}"


# --- argument types ----------------------------------------------------------------------------


def parse_subscription(text: str) -> SubscriptionId:
    """``TYPE:DATA``; TYPE is a name (e164/msisdn, imsi, sip, nai, private) or 0..4."""
    kind, sep, data = text.partition(":")
    if not sep or not data:
        raise argparse.ArgumentTypeError(f"expected TYPE:DATA, got {text!r}")
    key = kind.strip().lower()
    if key.isdigit():
        try:
            sub_type = SubscriptionIdType(int(key))
        except ValueError:
            raise argparse.ArgumentTypeError(f"subscription type {kind!r} not in 0..4") from None
    elif key in _SUB_TYPES:
        sub_type = _SUB_TYPES[key]
    else:
        names = ", ".join(sorted(_SUB_TYPES))
        raise argparse.ArgumentTypeError(f"unknown subscription type {kind!r} (one of {names})")
    return SubscriptionId(subscription_id_type=sub_type, subscription_id_data=data)


def parse_amount(text: str, *, micro: bool, signed: bool = False) -> int:
    """An amount in int micro-units: exact decimal currency units (``"12.34"`` ->
    12_340_000), or with ``micro`` an integer of micro-units. Raises `ValueError`."""
    body = text.strip()
    negative = body.startswith("-")
    if negative:
        if not signed:
            raise ValueError(f"negative amount {text!r}")
        body = body[1:]
    if micro:
        if not body.isdigit():
            raise ValueError(f"not an integer of micro-units: {text!r}")
        value = int(body)
    else:
        value = parse_money(body)
    return -value if negative else value


def money(micro: int) -> str:
    """Micro-units as exact decimal currency units: 12_340_000 -> "12.34"."""
    return format_exact(micro)


# --- the command -------------------------------------------------------------------------------


def server_options(what: str = "the server to talk to") -> argparse.ArgumentParser:
    """The options of every client command that talks to a running server (``ocs account``,
    ``ocs cdr rotate``, ``ocs catalog show|diff``): the address, our identity, the timeout,
    ``--json`` and TLS; read from the environment or the client file too (`CLIENT_KEYS`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        type=server_address,
        default=server_address(DEFAULT_SERVER),
        metavar="HOST:PORT",
        help=f"{what} (default: $OCS_SERVER, the client file's, {DEFAULT_SERVER};"
        " docs/operations.md)",
    )
    common.add_argument(
        "--origin-host",
        default=None,
        help="our Diameter Origin-Host (default ocs-admin.<hostname>); with a peer list on "
        "the server it must be listed there with the admin application",
    )
    common.add_argument("--origin-realm", default=DEFAULT_REALM)
    common.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="per request"
    )
    common.add_argument("--json", action="store_true", help="print one JSON object")
    add_tls_client_arguments(common)
    return common


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "account",
        help="administer accounts on a running server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="account_command", required=True)

    common = server_options()
    common.add_argument(
        "--micro",
        action="store_true",
        help="amounts are int micro-units (1000000 = one currency unit), not decimal units",
    )

    create = sub.add_parser("create", parents=[common], help="create an account")
    create.add_argument("account_id", metavar="ACCOUNT_ID")
    _identity_arguments(create, "repeatable")
    create.add_argument("--balance", default="0", metavar="AMOUNT", help="initial balance")
    create.add_argument("--credit-limit", default="0", metavar="AMOUNT")
    create.add_argument(
        "--currency",
        type=int,
        default=None,
        metavar="CODE",
        help="ISO 4217 numeric code, e.g. 978 (default: the catalog's)",
    )
    create.set_defaults(settings=ClientSettings(create, CLIENT_KEYS))
    create.set_defaults(func=run, operation=AccountOperation.CREATE)

    get = sub.add_parser("get", parents=[common], help="show an account")
    get.add_argument("account_id", metavar="ACCOUNT_ID")
    get.set_defaults(settings=ClientSettings(get, CLIENT_KEYS))
    get.set_defaults(func=run, operation=AccountOperation.GET)

    for name, op, what in (
        ("credit", AccountOperation.CREDIT, "add money (top-up)"),
        ("debit", AccountOperation.DEBIT, "take money (refused if credit does not allow it)"),
    ):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("account_id", metavar="ACCOUNT_ID")
        p.add_argument("amount", metavar="AMOUNT")
        p.add_argument(
            "--operation-id",
            default=None,
            metavar="ID",
            help="applied once however often sent (default: a new UUID, printed so that the "
            "command can be retried with it)",
        )
        p.set_defaults(func=run, operation=op, settings=ClientSettings(p, CLIENT_KEYS))

    status = sub.add_parser("status", parents=[common], help="set the account status")
    status.add_argument("account_id", metavar="ACCOUNT_ID")
    status.add_argument("status", choices=sorted(_STATUS_NAMES, key=_STATUS_NAMES.__getitem__))
    status.set_defaults(settings=ClientSettings(status, CLIENT_KEYS))
    status.set_defaults(func=run, operation=AccountOperation.SET_STATUS)

    update = sub.add_parser(
        "update", parents=[common], help="change status, credit limit and/or identities"
    )
    update.add_argument("account_id", metavar="ACCOUNT_ID")
    update.add_argument("--status", choices=sorted(_STATUS_NAMES, key=_STATUS_NAMES.__getitem__))
    update.add_argument("--credit-limit", default=None, metavar="AMOUNT")
    _state_arguments(update)  # status-policy
    _identity_arguments(update, "replace the account's identities with these; repeatable")
    update.add_argument("--operation-id", default=None, metavar="ID", help=_ONCE_HELP)
    update.set_defaults(settings=ClientSettings(update, CLIENT_KEYS))
    update.set_defaults(func=run, operation=AccountOperation.UPDATE)

    # status-policy: an operator-defined state of the catalog's [status] (docs/protocol.md)
    state = sub.add_parser(
        "state",
        parents=[common],
        help="set the account's operator-defined state (one of the catalog's [status] states; "
        '"active" clears it); open sessions are re-authorised, or aborted where it denies all',
    )
    state.add_argument("account_id", metavar="ACCOUNT_ID")
    state.add_argument("state_name", metavar="STATE")
    state.set_defaults(settings=ClientSettings(state, CLIENT_KEYS))
    state.set_defaults(func=run, operation=AccountOperation.SET_STATUS)

    close = sub.add_parser(
        "close", parents=[common], help="remove an account (balance zero, no open session)"
    )
    close.add_argument("account_id", metavar="ACCOUNT_ID")
    close.add_argument("--operation-id", default=None, metavar="ID", help=_ONCE_HELP)
    close.set_defaults(settings=ClientSettings(close, CLIENT_KEYS))
    close.set_defaults(func=run, operation=AccountOperation.CLOSE)

    listing = sub.add_parser("list", parents=[common], help="print the Account-Ids in order")
    listing.add_argument(
        "--from", dest="account_id", default=LIST_START, metavar="ACCOUNT_ID", help="first id"
    )
    listing.set_defaults(settings=ClientSettings(listing, CLIENT_KEYS))
    listing.set_defaults(func=run_list, operation=AccountOperation.LIST)

    search = sub.add_parser("search", parents=[common], help="the account holding an identity")
    search.add_argument("identity", type=parse_subscription, metavar="TYPE:DATA")
    search.set_defaults(settings=ClientSettings(search, CLIENT_KEYS), account_id="-")
    search.set_defaults(func=run, operation=AccountOperation.SEARCH)

    history = sub.add_parser(
        "history", parents=[common], help="the account's last movements of money and units"
    )
    history.add_argument("account_id", metavar="ACCOUNT_ID")
    history.add_argument(
        "--limit", type=int, default=None, metavar="N", help="at most N movements (1..100)"
    )
    history.add_argument(
        "--before", type=int, default=None, metavar="SEQ", help="movements numbered below SEQ"
    )
    history.set_defaults(settings=ClientSettings(history, CLIENT_KEYS))
    history.set_defaults(func=run, operation=AccountOperation.HISTORY)

    from ocs.cli import account_import  # here: it imports this module

    account_import.register(sub, common, CLIENT_KEYS)

    # offers (docs/protocol.md, *Extension: offers*)
    for name, op, what in (
        ("subscribe", AccountOperation.SUBSCRIBE, "take an offer of the catalog (pays its fee)"),
        ("unsubscribe", AccountOperation.UNSUBSCRIBE, "give an offer up (its units are lost)"),
    ):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("account_id", metavar="ACCOUNT_ID")
        p.add_argument("offer_name", metavar="OFFER")
        p.add_argument("--operation-id", default=None, metavar="ID", help=_ONCE_HELP)
        p.set_defaults(func=run, operation=op, settings=ClientSettings(p, CLIENT_KEYS))
    from ocs.cli import account_groups  # groups: group-join, group-leave, statement

    account_groups.register(sub, common, CLIENT_KEYS)

    terminate = sub.add_parser(
        "terminate-session",
        parents=[common],
        help="end a session of the account, whichever peer opened it (reservations released, "
        "CDR closed as managementIntervention, ASR to its peer)",
    )
    terminate.add_argument("account_id", metavar="ACCOUNT_ID")
    terminate.add_argument("session_id", metavar="SESSION_ID")
    terminate.set_defaults(settings=ClientSettings(terminate, CLIENT_KEYS))
    terminate.set_defaults(func=run, operation=AccountOperation.TERMINATE_SESSION)

    # loans (docs/protocol.md LOAN; docs/accounts.md "A loan")
    loan = sub.add_parser(
        "loan",
        parents=[common],
        help="take an airtime loan of an amount the catalog's loan policy offers (the USSD/IVR "
        "request); the next top-ups repay it",
    )
    loan.add_argument("account_id", metavar="ACCOUNT_ID")
    loan.add_argument("amount", metavar="AMOUNT")
    loan.add_argument("--operation-id", default=None, metavar="ID", help=_ONCE_HELP)
    loan.set_defaults(settings=ClientSettings(loan, CLIENT_KEYS))
    loan.set_defaults(func=run, operation=AccountOperation.LOAN)


def _state_arguments(parser: argparse.ArgumentParser) -> None:
    """status-policy: UPDATE's keys of the account's state (docs/protocol.md)."""
    parser.add_argument(
        "--state",
        dest="state_name",
        default=None,
        metavar="STATE",
        help='an operator-defined state of the catalog\'s [status] ("active" clears it)',
    )
    for name, what in (("inhibit", "low balance: grants stop there"), ("notify", "notification")):
        parser.add_argument(
            f"--{name}-threshold",
            default=None,
            metavar="AMOUNT",
            help=f"the account's own {what} threshold; 'catalog' gives it the catalog's again",
        )


def _state_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if getattr(args, "state_name", None) is not None:
        fields["account_state"] = args.state_name
    for name in ("inhibit", "notify"):
        text = getattr(args, f"{name}_threshold", None)
        if text is None:
            continue
        fields[f"{name}_threshold"] = (
            -1 if text == "catalog" else parse_amount(text, micro=args.micro)
        )
    return fields


def _identity_arguments(parser: argparse.ArgumentParser, how: str) -> None:
    parser.add_argument(
        "--msisdn",
        action="append",
        default=[],
        metavar="E164",
        help=f"a leading + is removed; {how}",
    )
    parser.add_argument("--imsi", action="append", default=[], metavar="IMSI", help=how)
    parser.add_argument(
        "--sub",
        type=parse_subscription,
        action="append",
        default=[],
        metavar="TYPE:DATA",
        help=f"any Subscription-Id (types: e164/msisdn, imsi, sip, nai, private or 0..4); {how}",
    )


def _identities(args: argparse.Namespace) -> tuple[SubscriptionId, ...]:
    return (
        *(
            SubscriptionId(
                subscription_id_type=SubscriptionIdType.END_USER_E164, subscription_id_data=m
            )
            for m in args.msisdn
        ),
        *(
            SubscriptionId(
                subscription_id_type=SubscriptionIdType.END_USER_IMSI, subscription_id_data=i
            )
            for i in args.imsi
        ),
        *args.sub,
    )


@dataclass(frozen=True, slots=True)
class _Outcome:
    result_code: int
    answer: Answer | None
    error: str | None  # no answer: why


def build_request(args: argparse.Namespace, origin_host: str) -> AMR:
    """The AMR for parsed arguments (raises `ValueError` on a bad amount)."""
    op: AccountOperation = args.operation
    fields: dict[str, Any] = {}
    if op is AccountOperation.CREATE:
        fields["subscription_id"] = _identities(args) or None
        fields["amount"] = parse_amount(args.balance, micro=args.micro, signed=True)
        fields["credit_limit"] = parse_amount(args.credit_limit, micro=args.micro)
        fields["currency_code"] = args.currency
    elif op in _MONEY_OPS:
        amount = parse_amount(args.amount, micro=args.micro)
        if amount <= 0:
            raise ValueError(f"the amount must be positive, not {args.amount!r}")
        fields["amount"] = amount
        fields["operation_id"] = args.operation_id
    elif op is AccountOperation.SET_STATUS and getattr(args, "state_name", None) is not None:
        fields["account_state"] = args.state_name  # status-policy: `ocs account state`
    elif op is AccountOperation.SET_STATUS:
        fields["account_status"] = _STATUS_NAMES[args.status]
    elif op is AccountOperation.TERMINATE_SESSION:
        fields["session_id"] = args.session_id
    elif op is AccountOperation.UPDATE:
        fields["subscription_id"] = _identities(args) or None
        if args.credit_limit is not None:
            fields["credit_limit"] = parse_amount(args.credit_limit, micro=args.micro)
        if args.status is not None:
            fields["account_status"] = _STATUS_NAMES[args.status]
        fields.update(_state_fields(args))  # status-policy
        if (
            not fields["subscription_id"]
            and "credit_limit" not in fields
            and args.status is None
            and not _state_fields(args)
        ):
            raise ValueError(
                "nothing to update: give --status, --credit-limit, identities, --state or a "
                "threshold"
            )
        fields["operation_id"] = args.operation_id
    elif op is AccountOperation.CLOSE:
        fields["operation_id"] = args.operation_id
    elif op is AccountOperation.SEARCH:
        fields["subscription_id"] = (args.identity,)
    elif op is AccountOperation.HISTORY:
        if args.limit is not None and not 1 <= args.limit <= MAX_HISTORY_PAGE:
            raise ValueError(f"--limit must be 1 to {MAX_HISTORY_PAGE}, not {args.limit}")
        if args.before is not None and args.before < 1:
            raise ValueError(f"--before must be positive, not {args.before}")
        fields["history_limit"] = args.limit
        fields["history_before"] = args.before
    elif op in (AccountOperation.SUBSCRIBE, AccountOperation.UNSUBSCRIBE):  # offers
        fields["offer_name"] = args.offer_name
        fields["operation_id"] = args.operation_id
    return AMR(
        origin_host=origin_host,
        origin_realm=args.origin_realm,
        account_operation=op,
        account_id=args.account_id,
        **fields,
    )


async def send(
    request: AMR,
    host: str,
    port: int,
    *,
    timeout: float,
    origin_host: str,
    origin_realm: str,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> _Outcome:
    try:
        client = await Client.connect(
            host,
            port,
            origin_host=origin_host,
            origin_realm=origin_realm,
            applications=(ApplicationId.ADMINISTRATION,),
            timeout=timeout,
            product_name="ocs-account",
            ssl=tls,
            server_hostname=server_hostname,
        )
    except (OSError, TimeoutError, ClientError) as exc:
        return _Outcome(0, None, f"cannot connect to {host}:{port}: {_why(exc)}")
    try:
        answer = await client.request(request, timeout=timeout)
    except (OSError, TimeoutError, ClientError) as exc:
        return _Outcome(0, None, f"no answer from {host}:{port}: {_why(exc)}")
    finally:
        await client.close(timeout=min(timeout, 2.0))
    return _Outcome(answer.result_code, answer, None)


def send_request(
    args: argparse.Namespace,
    request: AMR,
    origin_host: str,
    tls: TlsClientConfig | None,
    context: ssl.SSLContext | None,
) -> _Outcome:
    """`send` one request to the server of `args` (`--server`, `--timeout`, `--origin-realm`,
    TLS as configured): what every one-request command does."""
    host, port = args.server
    return asyncio.run(
        send(
            request,
            host,
            port,
            timeout=args.timeout,
            origin_host=origin_host,
            origin_realm=args.origin_realm,
            tls=context,
            server_hostname=tls.hostname(host) if tls is not None else None,
        )
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    origin_host = args.origin_host or default_origin_host()
    op: AccountOperation = args.operation
    fresh_id = op in _ONCE_OPS and args.operation_id is None
    if fresh_id:
        args.operation_id = str(uuid.uuid4())
    try:
        request = build_request(args, origin_host)
        tls = tls_client_config(args)
        context = client_context(tls) if tls is not None else None
    except (ValueError, TlsConfigError) as exc:  # refused here: nothing is sent
        print(f"error: {exc}", file=stderr)
        return EXIT_NO_ANSWER
    if fresh_id and not args.json:  # only for a request that is sent (so may be retried)
        print(f"operation id {args.operation_id}", file=stderr)
    outcome = send_request(args, request, origin_host, tls, context)
    code = (
        EXIT_NO_ANSWER
        if outcome.answer is None
        else EXIT_OK
        if outcome.result_code == 2001
        else EXIT_REFUSED
    )
    if args.json:
        print(json.dumps(_json(args, outcome), sort_keys=False), file=stdout)
    elif outcome.answer is None:
        print(f"error: {outcome.error}", file=stderr)
    else:
        print(_human(args, outcome), file=stdout if code == EXIT_OK else stderr)
    return code


def run_list(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``ocs account list``: every Account-Id from ``--from`` on, one a line (with ``--json``,
    one JSON array), asking page after page over one connection."""
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    origin_host = args.origin_host or default_origin_host()
    host, port = args.server
    try:
        tls = tls_client_config(args)
        context = client_context(tls) if tls is not None else None
    except (ValueError, TlsConfigError) as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_NO_ANSWER
    ids: list[str] = []

    async def pages() -> _Outcome:
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
            return _Outcome(0, None, f"cannot connect to {host}:{port}: {_why(exc)}")
        start: str = args.account_id
        try:
            while True:
                request = AMR(
                    origin_host=origin_host,
                    origin_realm=args.origin_realm,
                    account_operation=AccountOperation.LIST,
                    account_id=start,
                )
                answer = await client.request(request, timeout=args.timeout)
                if answer.result_code != 2001 or not isinstance(answer, AMA):
                    return _Outcome(answer.result_code, answer, None)
                page = [i for i in answer.listed_account_id or () if i != start or not ids]
                for account_id in page:
                    if not args.json:
                        print(account_id, file=stdout)
                ids.extend(page)
                if not page:
                    return _Outcome(answer.result_code, answer, None)
                start = page[-1]
        except (OSError, TimeoutError, ClientError) as exc:
            return _Outcome(0, None, f"no answer from {host}:{port}: {_why(exc)}")
        finally:
            await client.close(timeout=min(args.timeout, 2.0))

    outcome = asyncio.run(pages())
    if args.json:
        obj = _json(args, outcome)
        obj["Listed-Account-Id"] = ids
        print(json.dumps(obj), file=stdout)
    elif outcome.answer is None:
        print(f"error: {outcome.error}", file=stderr)
    elif outcome.result_code != 2001:
        print(_human(args, outcome), file=stderr)
    if outcome.answer is None:
        return EXIT_NO_ANSWER
    return EXIT_OK if outcome.result_code == 2001 else EXIT_REFUSED


def _account(answer: Answer | None) -> dict[str, Any] | None:
    if isinstance(answer, AMA) and answer.account is not None:
        account: dict[str, Any] = msgspec.to_builtins(answer.account)
        return account
    return None


def _json(args: argparse.Namespace, outcome: _Outcome) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "Account-Operation": args.operation.name,
        "Account-Id": args.account_id,
    }
    if getattr(args, "operation_id", None) is not None:
        obj["Operation-Id"] = args.operation_id
    if getattr(args, "session_id", None) is not None:
        obj["Session-Id"] = args.session_id
    if outcome.answer is None:
        obj["Result-Code"] = None
        obj["error"] = outcome.error
        return obj
    obj["Result-Code"] = outcome.result_code
    if outcome.answer.error_message is not None:
        obj["Error-Message"] = outcome.answer.error_message
    if outcome.answer.failed_avp is not None:
        obj["Failed-AVP"] = outcome.answer.failed_avp
    account = _account(outcome.answer)
    if account is not None:
        obj["Account"] = account
    answer = outcome.answer
    if isinstance(answer, AMA) and answer.movement_count is not None:
        obj["Movement-Count"] = answer.movement_count
        obj["Movement"] = msgspec.to_builtins(answer.movement or ())
    return obj


def _human(args: argparse.Namespace, outcome: _Outcome) -> str:
    answer = outcome.answer
    assert answer is not None
    op: AccountOperation = args.operation
    if outcome.result_code != 2001:
        # the server's words: Error-Message and Failed-AVP tell one cause from another
        what = result_code_name(outcome.result_code)
        detail = f": {answer.error_message}" if answer.error_message else ""
        failed = (
            f" Failed-AVP {json.dumps(answer.failed_avp, default=repr)}"
            if answer.failed_avp is not None
            else ""
        )
        suffix = f" (operation id {args.operation_id})" if op in _ONCE_OPS else ""
        return (
            f"{op.name.lower()} {args.account_id}: Result-Code {outcome.result_code} "
            f"{what}{detail}{failed}{suffix}"
        )
    if op is AccountOperation.HISTORY and isinstance(answer, AMA):
        return _history_lines(args.account_id, answer)
    account = answer.account if isinstance(answer, AMA) else None
    if account is None:
        return f"{op.name.lower()} {args.account_id}: ok"
    subs = ",".join(
        f"{_sub_name(s.subscription_id_type)}:{s.subscription_id_data}"
        for s in account.subscription_id
    )
    head = {
        AccountOperation.CREATE: "created",
        AccountOperation.GET: "account",
        AccountOperation.CREDIT: "credited",
        AccountOperation.DEBIT: "debited",
        AccountOperation.SET_STATUS: "status set",
        AccountOperation.TERMINATE_SESSION: "session terminated",
        AccountOperation.UPDATE: "updated",
        AccountOperation.SEARCH: "account",
        AccountOperation.SUBSCRIBE: "subscribed",
        AccountOperation.UNSUBSCRIBE: "unsubscribed",
        AccountOperation.LOAN: "loan taken",
    }[op]
    if op in _MONEY_OPS:
        amount = parse_amount(args.amount, micro=args.micro)
        head = f"{head} {money(amount)}"
    elif op is AccountOperation.TERMINATE_SESSION:
        head = f"{head} {args.session_id}"
    elif op in (AccountOperation.SUBSCRIBE, AccountOperation.UNSUBSCRIBE):
        head = f"{head} {args.offer_name}"
    loans = ""
    if account.loan_balance is not None:  # an account that borrowed (docs/protocol.md LOAN)
        owed = [
            f"{item.loan_id} {money(item.loan_amount)} fee {money(item.loan_fee)} owes "
            f"{money(item.loan_principal_due)}+{money(item.loan_fee_due)}"
            for item in account.loan or ()
        ]
        loans = f" loan-balance {money(account.loan_balance)} loans {'; '.join(owed) or '-'}"
    state = ""  # status-policy: the state, when the server has policies in force
    if account.account_state is not None:
        state = f" state {account.account_state}"
        for name, value in (
            ("inhibit", account.inhibit_threshold),
            ("notify", account.notify_threshold),
        ):
            if value is not None:
                state += f" {name}-threshold {money(value)}"
    return (
        f"{head}: {account.account_id} {account.account_status.name.lower()} "
        f"balance {money(account.balance)} reserved {money(account.reserved)} "
        f"credit-limit {money(account.credit_limit)} currency {account.currency_code} "
        f"sessions {account.session_count} subscriptions {subs or '-'}{loans}{state}"
        + "".join(
            f"\n  offer {b.offer_name} {b.allowance_name}: {b.allowance_units} units left, "
            f"{b.allowance_reserved} held, rating groups "
            f"{','.join(str(rg) for rg in b.allowance_rating_group)}, "
            f"expires {_expiry(b.balance_expiry)}"
            + (" (suspended)" if b.offer_status is OfferStatus.SUSPENDED else "")
            for b in account.offer_balance or ()
        )
        + "".join(f"\n  {_counter_line(c)}" for c in account.usage_counter or ())
    )


def _counter_line(counter: UsageCounter) -> str:
    """One usage counter of GET (docs/protocol.md, *Extension: usage counters*): its value
    (money in currency units), its period in UTC, the highest threshold crossed in it."""
    unit = counter.counter_unit

    def amount(value: int) -> str:
        return money(value) if unit is CounterUnit.MONEY else f"{value} {unit.name.lower()}"

    text = f"counter {counter.counter_name} {amount(counter.counter_value)}"
    if counter.start_time is not None:
        text += f" since {_utc(counter.start_time)}"
    if counter.stop_time is not None:
        text += f" until {_utc(counter.stop_time)}"
    if counter.counter_threshold is not None:
        text += f" threshold {amount(counter.counter_threshold)} crossed"
    return text


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expiry(at_s: int | None) -> str:
    """An offer balance's expiry, ISO 8601 UTC ("never" for an offer of period "once")."""
    if at_s is None:
        return "never"
    return datetime.fromtimestamp(at_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_MONEY_OPS: Final = (AccountOperation.CREDIT, AccountOperation.DEBIT, AccountOperation.LOAN)
# carry an Operation-Id (given, or a fresh UUID printed so that the command can be retried)
_ONCE_OPS: Final = (
    *_MONEY_OPS,
    AccountOperation.UPDATE,
    AccountOperation.CLOSE,
    AccountOperation.SUBSCRIBE,  # offers
    AccountOperation.UNSUBSCRIBE,
)
_ONCE_HELP: Final = (
    "applied once however often sent (default: a new UUID, printed so that the command can be "
    "retried with it)"
)
# LIST from the first Account-Id there can be (ids are compared by code point)
LIST_START: Final = "\x00"


def _history_lines(account_id: str, answer: AMA) -> str:
    """A HISTORY answer, one movement a line, newest first."""
    movements = answer.movement or ()
    count = answer.movement_count or 0
    lines = [f"history {account_id}: {count} movements, {len(movements)} shown (newest first)"]
    for m in movements:
        at = datetime.fromtimestamp(m.event_timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        sign = "+" if m.amount > 0 else "-" if m.amount < 0 else " "
        parts = [f"#{m.movement_sequence}", at, f"{m.movement_kind.name.lower():<13}"]
        parts.append(f"{sign}{money(abs(m.amount))}")
        if m.rating_group is not None:
            parts.append(f"rating-group {m.rating_group}")
        if m.movement_units is not None:
            parts.append(f"units {m.movement_units}")
        if m.movement_record is not None:
            parts.append(f"cdr {m.movement_record}")
        if m.operation_id is not None:
            parts.append(f"operation {m.operation_id}")
        lines.append("  " + " ".join(parts))
    if movements and movements[-1].movement_sequence > 1:
        lines.append(f"  (older: --before {movements[-1].movement_sequence})")
    return "\n".join(lines)


def _sub_name(kind: int) -> str:
    return {0: "e164", 1: "imsi", 2: "sip", 3: "nai", 4: "private"}.get(int(kind), str(kind))
