"""The domains of accepted values (WIRE.md 1.1 section 2, "Limits"), defined once.

Every value the server accepts lies in a documented domain, chosen so that everything the server
derives from accepted values (sums per report, per session and per account, prices at the
dearest tariff, CDR JSON, answers, snapshots, packed sessions, the ledger's bounds) fits by
construction. The codec's message types (`protocol.messages`) carry the static per-value limits
as msgspec constraints, so a value outside them is answered 5004 with `Failed-AVP` (5005 when
missing) by the codec, before anything changes; the charging core (`ocs.core.charging`) checks
what accumulates (per session, per account) and the `Event-Timestamp` window, also before
anything changes.

The table in docs/protocol.md ("Limits") shows what bounds what; tests/protocol/test_limits.py
checks it against these constants and the derivations below. This module is in the protocol
layer, the lowest one, so that the codec and the core share it.
"""

from __future__ import annotations

from typing import Final

# --- strings (characters) ---------------------------------------------------------------------

#: DiameterIdentity of a request: Origin-Host, Origin-Realm, Destination-Host,
#: Destination-Realm. The ledger ids the core derives from it fit the ledger's 256 characters.
MAX_IDENTITY_LENGTH: Final = 64
#: Session-Id: it begins with the Origin-Host (WIRE.md 5.3), and owns ledger reservations.
MAX_SESSION_ID_LENGTH: Final = 128
#: Account-Id of an AMR.
MAX_ACCOUNT_ID_LENGTH: Final = 128
#: Operation-Id of an AMR (the ledger keeps it, prefixed, as an operation id).
MAX_OPERATION_ID_LENGTH: Final = 128
#: Subscription-Id-Data: the ledger's own bound on an identity (`MAX_ID_LENGTH`), so that every
#: identity an account holds is also one a request may carry.
MAX_SUBSCRIPTION_DATA_LENGTH: Final = 256
#: Any other string of a request: Service-Context-Id, User-Name, Product-Name,
#: Host-IP-Address.
MAX_TEXT_LENGTH: Final = 128
#: Account-State of an AMR (status-policy: a state name of the catalog's `[status]`).
MAX_STATE_NAME_LENGTH: Final = 64

# --- arrays (entries) -------------------------------------------------------------------------

#: Subscription-Id entries of a CCR or AMR (the ledger's `MAX_SUBSCRIPTIONS`).
MAX_SUBSCRIPTION_IDS: Final = 16
#: Multiple-Services-Credit-Control entries of a CCR; each Rating-Group at most once.
MAX_MSCC: Final = 64
#: Used-Service-Unit entries of one MSCC.
MAX_USU: Final = 4
#: Any other array of a request the server receives (a CER's Host-IP-Address and
#: Auth-Application-Id).
MAX_LIST_LENGTH: Final = 64

# --- usage -------------------------------------------------------------------------------------

#: Largest value of a unit AVP (CC-Time, CC-Total-Octets, CC-Input-Octets, CC-Output-Octets,
#: CC-Service-Specific-Units) in a Requested-, Used- or Granted-Service-Unit: 2^40 (1.1 TB,
#: 1.1 x 10^12 units). A grant never exceeds it either.
MAX_UNITS: Final = 2**40
#: Units one Used-Service-Unit counts: CC-Total-Octets, or CC-Input-Octets + CC-Output-Octets.
MAX_USU_UNITS: Final = 2 * MAX_UNITS
#: Units one MSCC reports (all its Used-Service-Units; one MSCC per rating group).
MAX_REPORT_UNITS: Final = MAX_USU * MAX_USU_UNITS
#: Largest CC-Request-Number: a session carries at most 2^19 requests (524,288 reports).
MAX_REQUEST_NUMBER: Final = 2**19 - 1
#: Units one session reports for one rating group, at most: every request a full report.
MAX_SESSION_UNITS: Final = (MAX_REQUEST_NUMBER + 1) * MAX_REPORT_UNITS

#: Movements one HISTORY answer lists at most (`History-Limit`; docs/protocol.md, *Extension:
#: history*): 100 movements of ~80-330 bytes (an Operation-Id at most 128 characters) fit a
#: message in either encoding.
MAX_HISTORY_PAGE: Final = 100

#: Accounts one CREATE_BULK carries at most (`Bulk-Account`; docs/protocol.md, *Extension:
#: bulk create*). Its answer lists each refused entry with a fixed `Error-Message` (at most
#: ~260 bytes with a 128-character Account-Id): 128 of them fit a message.
MAX_BULK_ACCOUNTS: Final = 128

# --- money (int micro-units) -------------------------------------------------------------------

#: Largest amount of one operation: an AMR Amount (CREATE's initial balance, CREDIT, DEBIT), a
#: Credit-Limit, one report's charge for one rating group, a reservation, an event's debit or
#: refund (the ledger's `MAX_AMOUNT`, 10^9 currency units).
MAX_AMOUNT: Final = 10**15
#: Bound on every account's balance and on what it can pay for (the ledger's `MAX_TOTAL`):
#: a charge that would take the available balance below -MAX_BALANCE, or a refund that would
#: take the balance above it, is refused.
MAX_BALANCE: Final = 2**62
#: Money one session is charged over its life (its AoC cost), at most.
MAX_SESSION_CHARGE: Final = 2**62
#: Currency-Code: ISO 4217 numeric.
MAX_CURRENCY_CODE: Final = 999
#: Largest signed 64-bit integer: what Integer64 AVPs and every int of a snapshot must stay in.
MAX_INT64: Final = 2**63 - 1

# --- time --------------------------------------------------------------------------------------

#: Largest Event-Timestamp (seconds since 1970): the rating engine's instants end before 2^33.
MAX_TIME_S: Final = 2**33 - 1
#: How far before the server's clock an Event-Timestamp may be: five years (1,826 days).
EVENT_TIMESTAMP_PAST_S: Final = 1826 * 86_400
#: How far after the server's clock an Event-Timestamp may be: one day.
EVENT_TIMESTAMP_FUTURE_S: Final = 86_400

# --- opaque maps (Service-Information) ---------------------------------------------------------

#: Nesting of Service-Information: its own map is level 1.
MAX_OPAQUE_DEPTH: Final = 8
#: Maps, arrays and values in a Service-Information, all levels counted.
MAX_OPAQUE_ITEMS: Final = 256
#: A key of a map in Service-Information (a string, always).
MAX_OPAQUE_KEY_LENGTH: Final = 64
#: A string (characters) or binary (bytes) value in Service-Information.
MAX_OPAQUE_VALUE_LENGTH: Final = 256

# --- bodies ------------------------------------------------------------------------------------

#: Nesting of a request body, unknown keys included (the body map is level 1): deeper is 3009.
MAX_BODY_DEPTH: Final = 32
#: Nesting of an answer body (an answer may echo a request's value in Failed-AVP).
MAX_ANSWER_DEPTH: Final = 2 * MAX_BODY_DEPTH

# --- per peer ----------------------------------------------------------------------------------

#: Open credit-control sessions one peer (the Origin-Host of its CER) holds: an INITIAL beyond
#: it is answered 5006 DIAMETER_RESOURCES_EXCEEDED and opens nothing (~1 KiB each: ~1 GiB).
MAX_SESSIONS_PER_PEER: Final = 2**20
#: Closed sessions one peer has remembered for the duplicate window (tombstones: the last
#: answer, for a late retransmission); beyond it that peer's oldest is forgotten.
MAX_TOMBSTONES_PER_PEER: Final = 2**20

# --- records and logs ---------------------------------------------------------------------------

#: A session's CDR is closed as a partial record once it holds this many containers, so a
#: record holds at most MAX_CONTAINERS - 1 + MAX_MSCC * MAX_USU of them.
MAX_CONTAINERS: Final = 256
#: Longest string value in a log line (characters); longer ones are cut (`ocs.edge.logs`).
MAX_LOG_STRING: Final = 256
#: Longest rendered exception (traceback) in a log line (characters).
MAX_LOG_EXCEPTION: Final = 8192

# --- offers (docs/protocol.md, *Extension: offers*) ----------------------------------------------

#: Longest `Offer-Name` (characters); the catalog's offer names are 1 to 64 characters.
MAX_OFFER_NAME_LENGTH: Final = 64
# --- groups (docs/protocol.md, "Extension: shared group packages") ------------------------------

#: Package-Name of GROUP_JOIN, characters (a catalog package's name has the same bound).
MAX_PACKAGE_NAME_LENGTH: Final = 64
