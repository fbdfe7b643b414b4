"""What the load sends: subscribers, flows, the mix, pre-encoded request frames.

Subscribers are provisioned over AMR (`provision`, `ocs.edge.client.Client`, pipelined) before
anything is measured: most with a large balance, a share (`LoadConfig.low_balance_share`) with
a few cents, so that grants are cut (Final-Unit-Indication) and refused per MSCC (4012).

Traffic is made of *flows* (one credit-control session or one event): a data session (INITIAL
for rating groups 10 and 20, `updates` UPDATEs reporting usage on RG 10, TERMINATION reporting
both), a voice call (RG 40: INITIAL, UPDATE, TERMINATION), and an SMS, half of them as a session
(INITIAL reserving one message, TERMINATION debiting it) and half as an EVENT with
DIRECT_DEBITING. The mix gives the share of *requests* of each service: a flow kind is picked
with a probability proportional to its share divided by its number of requests (`flow_weights`).

Frames are pre-encoded (`FrameTemplate`): for every (flow kind, step) a body is encoded once per
connection with msgspec (or, for `LoadConfig.encoding` 0x01, as standard Diameter AVPs by
`protocol.avp`), with placeholders for the Session-Id and the Subscription-Id-Data; those have
a fixed length, so a request is the concatenation of constant byte strings, the 8 bytes of the
ids, the session id and the subscriber number.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from ocs.edge.client import Client
from ocs.edge.tls import client_context
from ocs.tools.load.config import LoadConfig
from protocol.avp import encode_avps
from protocol.codes import (
    HEADER_LENGTH,
    VERSION,
    VERSION_DIAMETER,
    AccountOperation,
    ApplicationId,
    CommandCode,
    Flag,
    SubscriptionIdType,
)
from protocol.messages import AMR, CCR, SubscriptionId

FUNDED_BALANCE: Final = 1_000_000_000  # 1,000 currency units: never runs out in a bench run
LOW_BALANCE: Final = 50_000  # 0.05 currency units: grants are cut (FUI), then refused (4012)
REALM: Final = "test.local"
SID_DIGITS: Final = 10  # Session-Ids end with this many digits

DATA_CONTEXT: Final = "32251@3gpp.org"
SMS_CONTEXT: Final = "32274@3gpp.org"
VOICE_CONTEXT: Final = "32260@3gpp.org"

_HEAD = struct.Struct(">III")  # version+length, flags+command, application
_IDS = struct.Struct(">II")  # hop-by-hop, end-to-end
_ENCODER: Final = msgspec.msgpack.Encoder()
_SID_MARK: Final = "\x01"
_SUB_MARK: Final = "\x02"
_CCR_FLAGS: Final = int(Flag.REQUEST | Flag.PROXIABLE)
_CC: Final = int(CommandCode.CREDIT_CONTROL)
_APP_CC: Final = int(ApplicationId.CREDIT_CONTROL)


def msisdn(run_id: int, index: int) -> str:
    """A fixed-length (15 digit) E.164 number, unique per run and subscriber."""
    return f"9{run_id % 1_000_000:06d}{index:08d}"


def peer_origin_host(run_id: int, index: int) -> str:
    """The Origin-Host of the load's connection `index` (each connection is a peer of its own)."""
    return f"lg{run_id % 1_000_000:06d}-{index:04d}.bench.local"


def session_prefix(origin_host: str, epoch: int) -> bytes:
    """What the Session-Ids of a connection begin with; `SID_DIGITS` digits of a counter
    (1, 2, ...) follow."""
    return f"{origin_host};{epoch};".encode()


def first_end_to_end(run_id: int, epoch: int, index: int) -> int:
    """The first Hop-by-Hop-Id and End-to-End-Id of connection `index` (each request takes the
    next, modulo 2**32): random-looking, but derived from the run so that the hostile
    neighbour's `foreign-ids` can aim at them (a string seed is hashed with SHA-512, the same in
    every process)."""
    return random.Random(f"ocs-bench/{run_id}/{epoch}/{index}").getrandbits(32)


def account_id(run_id: int, index: int) -> str:
    """The account of subscriber `index` of run `run_id`."""
    return f"bench-{run_id % 1_000_000:06d}-{index:08d}"


def flow_weights(mix: Sequence[tuple[str, float]], updates: int) -> tuple[list[float], list[int]]:
    """Cumulative probabilities of starting each flow kind (`config.KINDS` order) so that the
    share of requests per service follows the mix; and the number of requests per flow kind."""
    shares = dict(mix)
    lengths = [2 + updates, 3, 2, 1]
    per_kind = [
        shares.get("data", 0.0),
        shares.get("voice", 0.0),
        shares.get("sms", 0.0) / 2,
        shares.get("sms", 0.0) / 2,
    ]
    raw = [share / n for share, n in zip(per_kind, lengths, strict=True)]
    total = sum(raw)
    cumulative: list[float] = []
    acc = 0.0
    for w in raw:
        acc += w / total
        cumulative.append(acc)
    cumulative[-1] = 1.0
    return cumulative, lengths


# --- pre-encoded request templates ----------------------------------------------------------


class FrameTemplate:
    """A CCR frame encoded once, with holes for the Session-Id and the subscriber number
    (whose lengths are fixed); `render` fills them and the ids."""

    __slots__ = ("head", "pieces", "with_sub")

    def __init__(
        self, body: dict[str, Any], sid_len: int, sub_len: int, version: int = VERSION
    ) -> None:
        body = dict(body)
        body["Session-Id"] = _SID_MARK * sid_len
        if "Subscription-Id" in body:
            body["Subscription-Id"] = [
                {
                    "Subscription-Id-Type": int(SubscriptionIdType.END_USER_E164),
                    "Subscription-Id-Data": _SUB_MARK * sub_len,
                }
            ]
        if version == VERSION_DIAMETER:
            raw = encode_avps(msgspec.convert(body, CCR))
        else:
            raw = _ENCODER.encode(body)
        marks = [(raw.find(_SID_MARK.encode() * sid_len), sid_len)]
        self.with_sub = "Subscription-Id" in body
        if self.with_sub:
            marks.append((raw.find(_SUB_MARK.encode() * sub_len), sub_len))
        if any(at < 0 for at, _ in marks) or (self.with_sub and marks[1][0] < marks[0][0]):
            raise ValueError("placeholder not found where expected")
        pieces: list[bytes] = []
        prev = 0
        for at, n in marks:
            pieces.append(raw[prev:at])
            prev = at + n
        pieces.append(raw[prev:])
        self.pieces = tuple(pieces)
        length = HEADER_LENGTH + len(raw)
        self.head = _HEAD.pack((version << 24) | length, (_CCR_FLAGS << 24) | _CC, _APP_CC)

    def render(self, hbh: int, sid: bytes, sub: bytes) -> bytes:
        p = self.pieces
        if self.with_sub:
            return b"".join((self.head, _IDS.pack(hbh, hbh), p[0], sid, p[1], sub, p[2]))
        return b"".join((self.head, _IDS.pack(hbh, hbh), p[0], sid, p[1]))


def flow_bodies(kind: str, origin_host: str, updates: int) -> list[dict[str, Any]]:
    """The CCR bodies of one flow of `kind`, in order (Session-Id and subscriber are filled
    in by the template)."""

    def ccr(context: str, req_type: int, number: int, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Session-Id": "",
            "Origin-Host": origin_host,
            "Origin-Realm": REALM,
            "Destination-Realm": REALM,
            "Auth-Application-Id": _APP_CC,
            "Service-Context-Id": context,
            "CC-Request-Type": req_type,
            "CC-Request-Number": number,
        }
        body.update(extra)
        return body

    sub = [{"Subscription-Id-Type": 0, "Subscription-Id-Data": ""}]
    mib = 1 << 20
    if kind == "data":
        out = [
            ccr(
                DATA_CONTEXT,
                1,
                0,
                **{
                    "Subscription-Id": sub,
                    "Multiple-Services-Credit-Control": [
                        {"Rating-Group": 10, "Requested-Service-Unit": {}},
                        {"Rating-Group": 20, "Requested-Service-Unit": {}},
                    ],
                },
            )
        ]
        for n in range(1, updates + 1):
            usu = {
                "CC-Total-Octets": 2 * mib,
                "CC-Input-Octets": mib // 4,
                "CC-Output-Octets": 2 * mib - mib // 4,
                "Reporting-Reason": 0,
            }
            msccs = [{"Rating-Group": 10, "Requested-Service-Unit": {}, "Used-Service-Unit": [usu]}]
            out.append(ccr(DATA_CONTEXT, 2, n, **{"Multiple-Services-Credit-Control": msccs}))
        final = [
            {
                "Rating-Group": 10,
                "Used-Service-Unit": [{"CC-Total-Octets": mib, "Reporting-Reason": 2}],
            },
            {
                "Rating-Group": 20,
                "Used-Service-Unit": [{"CC-Total-Octets": 5 * mib, "Reporting-Reason": 2}],
            },
        ]
        out.append(
            ccr(
                DATA_CONTEXT,
                3,
                updates + 1,
                **{"Termination-Cause": 1, "Multiple-Services-Credit-Control": final},
            )
        )
        return out
    if kind == "voice":
        return [
            ccr(
                VOICE_CONTEXT,
                1,
                0,
                **{
                    "Subscription-Id": sub,
                    "Multiple-Services-Credit-Control": [
                        {"Rating-Group": 40, "Requested-Service-Unit": {}}
                    ],
                },
            ),
            ccr(
                VOICE_CONTEXT,
                2,
                1,
                **{
                    "Multiple-Services-Credit-Control": [
                        {
                            "Rating-Group": 40,
                            "Requested-Service-Unit": {},
                            "Used-Service-Unit": [{"CC-Time": 240, "Reporting-Reason": 0}],
                        }
                    ]
                },
            ),
            ccr(
                VOICE_CONTEXT,
                3,
                2,
                **{
                    "Termination-Cause": 1,
                    "Multiple-Services-Credit-Control": [
                        {
                            "Rating-Group": 40,
                            "Used-Service-Unit": [{"CC-Time": 75, "Reporting-Reason": 2}],
                        }
                    ],
                },
            ),
        ]
    one_sms = {"CC-Service-Specific-Units": 1}
    if kind == "sms-session":
        return [
            ccr(
                SMS_CONTEXT,
                1,
                0,
                **{
                    "Subscription-Id": sub,
                    "Multiple-Services-Credit-Control": [
                        {"Rating-Group": 30, "Requested-Service-Unit": one_sms}
                    ],
                },
            ),
            ccr(
                SMS_CONTEXT,
                3,
                1,
                **{
                    "Termination-Cause": 1,
                    "Multiple-Services-Credit-Control": [
                        {
                            "Rating-Group": 30,
                            "Used-Service-Unit": [{**one_sms, "Reporting-Reason": 2}],
                        }
                    ],
                },
            ),
        ]
    if kind == "sms-event":
        return [
            ccr(
                SMS_CONTEXT,
                4,
                0,
                **{
                    "Requested-Action": 0,
                    "Subscription-Id": sub,
                    "Multiple-Services-Credit-Control": [
                        {"Rating-Group": 30, "Requested-Service-Unit": one_sms}
                    ],
                },
            )
        ]
    raise ValueError(f"unknown flow kind {kind!r}")


# --- provisioning ---------------------------------------------------------------------------


async def provision(
    host: str, port: int, cfg: LoadConfig, *, window: int = 256, timeout: float = 120.0
) -> dict[str, int]:
    """Create the subscribers' accounts over AMR; returns Result-Code counts."""
    origin = f"lgadmin{cfg.run_id % 1_000_000:06d}.bench.local"
    client = await Client.connect(
        host,
        port,
        origin_host=origin,
        origin_realm=REALM,
        applications=(int(ApplicationId.ADMINISTRATION),),
        product_name="ocs-bench",
        ssl=client_context(cfg.tls) if cfg.tls is not None else None,
        server_hostname=cfg.tls.hostname(host) if cfg.tls is not None else None,
        encoding=cfg.encoding,
    )
    codes: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        pending: set[asyncio.Future[Any]] = set()
        for i in range(cfg.subscribers):
            amount = FUNDED_BALANCE if i < cfg.funded else LOW_BALANCE
            amr = AMR(
                origin_host=origin,
                origin_realm=REALM,
                account_operation=AccountOperation.CREATE,
                account_id=account_id(cfg.run_id, i),
                amount=amount,
                subscription_id=(
                    SubscriptionId(
                        subscription_id_type=SubscriptionIdType.END_USER_E164,
                        subscription_id_data=msisdn(cfg.run_id, i),
                    ),
                ),
            )
            pending.add(client.send(amr))
            if len(pending) >= window:
                done, pending = await asyncio.wait(
                    pending,
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    raise TimeoutError("provisioning timed out")
                _count_ama(done, codes)
        if pending:
            done, pending = await asyncio.wait(
                pending, timeout=max(0.0, deadline - time.monotonic())
            )
            _count_ama(done, codes)
            if pending:
                raise TimeoutError("provisioning timed out")
    finally:
        await client.close()
    return codes


def _count_ama(done: set[asyncio.Future[Any]], codes: dict[str, int]) -> None:
    for fut in done:
        code = str(fut.result().answer.result_code)
        codes[code] = codes.get(code, 0) + 1
