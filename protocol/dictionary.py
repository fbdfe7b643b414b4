"""The AVP dictionary: codes, vendors, types and flags of every AVP the server knows by name.

One table for both body encodings (WIRE.md 1.1 sections 1 and 2): the MessagePack codec keys a
body by these names, the binary codec (`protocol.avp`) encodes each name as the AVP of this
code, vendor and type. It covers the base protocol (RFC 6733 section 4.5 and the AVPs its
commands carry), credit control (RFC 8506 section 8 and table 8.1), and the 3GPP TS 32.299
AVPs (vendor 10415) the message model uses, plus the parts of `Service-Information` the server
decodes into its opaque map (TS 32.299 section 7.2).

Sources, entry by entry (`source`): the RFC section defining the AVP, or the 3GPP TS 32.299 /
TS 29.061 clause. Codes and data types were read from those documents as they are carried by
Wireshark's dictionary (`resources/protocols/diameter/dictionary.xml`, `TGPP.xml`,
`chargecontrol.xml`) and python-diameter 0.9.0's `diameter.message.constants`;
tests/protocol/test_dictionary.py checks every standard entry against python-diameter's
dictionary (code, vendor, wire size of the type). The M bit is the "MUST" column of those
tables: set on every base and credit-control AVP but Product-Name, Firmware-Revision and
Error-Message (RFC 6733 section 4.5: "MUST NOT" M), and on the 3GPP AVPs TS 32.299 marks M.

Extensions of WIRE.md that no standard defines (`Linked-Rating-Group`, WIRE.md 5.6, and the
administration application's AVPs, WIRE.md section 8) are vendor-specific AVPs of the private
vendor `VENDOR_OCS` (0x4F435341, "OCSA", as the administration Application-Id; an unregistered
number above every assigned SMI enterprise number), without the M bit, so that a peer that does
not know them ignores them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

VENDOR_IETF: Final = 0
VENDOR_3GPP: Final = 10415
VENDOR_OCS: Final = 0x4F435341  # private, unregistered: the extensions of WIRE.md


class AvpType(enum.Enum):
    """RFC 6733 section 4.2 (basic) and 4.3 (derived) AVP data formats."""

    OCTET_STRING = "OctetString"
    INTEGER32 = "Integer32"
    INTEGER64 = "Integer64"
    UNSIGNED32 = "Unsigned32"
    UNSIGNED64 = "Unsigned64"
    FLOAT32 = "Float32"
    FLOAT64 = "Float64"
    GROUPED = "Grouped"
    ADDRESS = "Address"
    TIME = "Time"
    UTF8_STRING = "UTF8String"
    DIAMETER_IDENTITY = "DiameterIdentity"
    DIAMETER_URI = "DiameterURI"
    ENUMERATED = "Enumerated"


@dataclass(frozen=True, slots=True, kw_only=True)
class AvpDef:
    """One AVP: `mandatory` is whether this side sets the M bit when it sends it."""

    name: str
    code: int
    vendor_id: int
    type: AvpType
    mandatory: bool
    source: str


T = AvpType
_RFC6733 = "RFC 6733"
_RFC8506 = "RFC 8506"
_TS32299 = "3GPP TS 32.299"
_TS29061 = "3GPP TS 29.061"

# name, code, type, M bit, source (section)
_BASE: Final[tuple[tuple[str, int, AvpType, bool, str], ...]] = (
    ("User-Name", 1, T.UTF8_STRING, True, f"{_RFC6733} 8.14"),
    ("Filter-Id", 11, T.UTF8_STRING, True, "RFC 7155 4.4.9; RFC 8506 8.34"),
    ("Called-Station-Id", 30, T.UTF8_STRING, True, "RFC 7155 4.2.5"),
    ("Proxy-State", 33, T.OCTET_STRING, True, f"{_RFC6733} 6.7.4"),
    ("Event-Timestamp", 55, T.TIME, True, f"{_RFC6733} 8.21"),
    ("Host-IP-Address", 257, T.ADDRESS, True, f"{_RFC6733} 5.3.5"),
    ("Auth-Application-Id", 258, T.UNSIGNED32, True, f"{_RFC6733} 6.8"),
    ("Acct-Application-Id", 259, T.UNSIGNED32, True, f"{_RFC6733} 6.9"),
    ("Vendor-Specific-Application-Id", 260, T.GROUPED, True, f"{_RFC6733} 6.11"),
    ("Session-Id", 263, T.UTF8_STRING, True, f"{_RFC6733} 8.8"),
    ("Origin-Host", 264, T.DIAMETER_IDENTITY, True, f"{_RFC6733} 6.3"),
    ("Supported-Vendor-Id", 265, T.UNSIGNED32, True, f"{_RFC6733} 5.3.6"),
    ("Vendor-Id", 266, T.UNSIGNED32, True, f"{_RFC6733} 5.3.3"),
    ("Firmware-Revision", 267, T.UNSIGNED32, False, f"{_RFC6733} 5.3.4"),
    ("Result-Code", 268, T.UNSIGNED32, True, f"{_RFC6733} 7.1"),
    ("Product-Name", 269, T.UTF8_STRING, False, f"{_RFC6733} 5.3.7"),
    ("Disconnect-Cause", 273, T.ENUMERATED, True, f"{_RFC6733} 5.4.3"),
    ("Auth-Session-State", 277, T.ENUMERATED, True, f"{_RFC6733} 8.11"),
    ("Origin-State-Id", 278, T.UNSIGNED32, True, f"{_RFC6733} 8.16"),
    ("Failed-AVP", 279, T.GROUPED, True, f"{_RFC6733} 7.5"),
    ("Proxy-Host", 280, T.DIAMETER_IDENTITY, True, f"{_RFC6733} 6.7.3"),
    ("Error-Message", 281, T.UTF8_STRING, False, f"{_RFC6733} 7.3"),
    ("Route-Record", 282, T.DIAMETER_IDENTITY, True, f"{_RFC6733} 6.7.1"),
    ("Destination-Realm", 283, T.DIAMETER_IDENTITY, True, f"{_RFC6733} 6.6"),
    ("Proxy-Info", 284, T.GROUPED, True, f"{_RFC6733} 6.7.2"),
    ("Re-Auth-Request-Type", 285, T.ENUMERATED, True, f"{_RFC6733} 8.12"),
    ("Destination-Host", 293, T.DIAMETER_IDENTITY, True, f"{_RFC6733} 6.5"),
    ("Error-Reporting-Host", 294, T.DIAMETER_IDENTITY, True, f"{_RFC6733} 7.4"),
    ("Termination-Cause", 295, T.ENUMERATED, True, f"{_RFC6733} 8.15"),
    ("Origin-Realm", 296, T.DIAMETER_IDENTITY, True, f"{_RFC6733} 6.4"),
    ("Experimental-Result", 297, T.GROUPED, True, f"{_RFC6733} 7.6"),
    ("Experimental-Result-Code", 298, T.UNSIGNED32, True, f"{_RFC6733} 7.7"),
    ("Inband-Security-Id", 299, T.UNSIGNED32, True, f"{_RFC6733} 6.10"),
    ("SIP-Method", 393, T.UTF8_STRING, True, "RFC 4740 9.5.13"),
    # credit control
    ("CC-Correlation-Id", 411, T.OCTET_STRING, False, f"{_RFC8506} 8.1"),
    ("CC-Input-Octets", 412, T.UNSIGNED64, True, f"{_RFC8506} 8.24"),
    ("CC-Money", 413, T.GROUPED, True, f"{_RFC8506} 8.22"),
    ("CC-Output-Octets", 414, T.UNSIGNED64, True, f"{_RFC8506} 8.25"),
    ("CC-Request-Number", 415, T.UNSIGNED32, True, f"{_RFC8506} 8.2"),
    ("CC-Request-Type", 416, T.ENUMERATED, True, f"{_RFC8506} 8.3"),
    ("CC-Service-Specific-Units", 417, T.UNSIGNED64, True, f"{_RFC8506} 8.26"),
    ("CC-Session-Failover", 418, T.ENUMERATED, True, f"{_RFC8506} 8.4"),
    ("CC-Sub-Session-Id", 419, T.UNSIGNED64, True, f"{_RFC8506} 8.5"),
    ("CC-Time", 420, T.UNSIGNED32, True, f"{_RFC8506} 8.21"),
    ("CC-Total-Octets", 421, T.UNSIGNED64, True, f"{_RFC8506} 8.23"),
    ("Check-Balance-Result", 422, T.ENUMERATED, True, f"{_RFC8506} 8.6"),
    ("Cost-Information", 423, T.GROUPED, True, f"{_RFC8506} 8.7"),
    ("Cost-Unit", 424, T.UTF8_STRING, True, f"{_RFC8506} 8.12"),
    ("Currency-Code", 425, T.UNSIGNED32, True, f"{_RFC8506} 8.11"),
    ("Credit-Control-Failure-Handling", 427, T.ENUMERATED, True, f"{_RFC8506} 8.14"),
    ("Direct-Debiting-Failure-Handling", 428, T.ENUMERATED, True, f"{_RFC8506} 8.15"),
    ("Exponent", 429, T.INTEGER32, True, f"{_RFC8506} 8.9"),
    ("Final-Unit-Indication", 430, T.GROUPED, True, f"{_RFC8506} 8.34"),
    ("Granted-Service-Unit", 431, T.GROUPED, True, f"{_RFC8506} 8.17"),
    ("Rating-Group", 432, T.UNSIGNED32, True, f"{_RFC8506} 8.29"),
    ("Redirect-Address-Type", 433, T.ENUMERATED, True, f"{_RFC8506} 8.38"),
    ("Redirect-Server", 434, T.GROUPED, True, f"{_RFC8506} 8.37"),
    ("Redirect-Server-Address", 435, T.UTF8_STRING, True, f"{_RFC8506} 8.39"),
    ("Requested-Action", 436, T.ENUMERATED, True, f"{_RFC8506} 8.41"),
    ("Requested-Service-Unit", 437, T.GROUPED, True, f"{_RFC8506} 8.18"),
    ("Restriction-Filter-Rule", 438, T.OCTET_STRING, True, f"{_RFC8506} 8.36"),
    ("Service-Identifier", 439, T.UNSIGNED32, True, f"{_RFC8506} 8.28"),
    ("Service-Parameter-Info", 440, T.GROUPED, False, f"{_RFC8506} 8.43"),
    ("Service-Parameter-Type", 441, T.UNSIGNED32, False, f"{_RFC8506} 8.44"),
    ("Service-Parameter-Value", 442, T.OCTET_STRING, False, f"{_RFC8506} 8.45"),
    ("Subscription-Id", 443, T.GROUPED, True, f"{_RFC8506} 8.46"),
    ("Subscription-Id-Data", 444, T.UTF8_STRING, True, f"{_RFC8506} 8.48"),
    ("Unit-Value", 445, T.GROUPED, True, f"{_RFC8506} 8.8"),
    ("Used-Service-Unit", 446, T.GROUPED, True, f"{_RFC8506} 8.19"),
    ("Value-Digits", 447, T.INTEGER64, True, f"{_RFC8506} 8.10"),
    ("Validity-Time", 448, T.UNSIGNED32, True, f"{_RFC8506} 8.33"),
    ("Final-Unit-Action", 449, T.ENUMERATED, True, f"{_RFC8506} 8.35"),
    ("Subscription-Id-Type", 450, T.ENUMERATED, True, f"{_RFC8506} 8.47"),
    ("Tariff-Time-Change", 451, T.TIME, True, f"{_RFC8506} 8.20"),
    ("Tariff-Change-Usage", 452, T.ENUMERATED, True, f"{_RFC8506} 8.27"),
    ("G-S-U-Pool-Identifier", 453, T.UNSIGNED32, True, f"{_RFC8506} 8.31"),
    ("CC-Unit-Type", 454, T.ENUMERATED, True, f"{_RFC8506} 8.32"),
    ("Multiple-Services-Indicator", 455, T.ENUMERATED, True, f"{_RFC8506} 8.40"),
    ("Multiple-Services-Credit-Control", 456, T.GROUPED, True, f"{_RFC8506} 8.16"),
    ("G-S-U-Pool-Reference", 457, T.GROUPED, True, f"{_RFC8506} 8.30"),
    ("User-Equipment-Info", 458, T.GROUPED, False, f"{_RFC8506} 8.49"),
    ("User-Equipment-Info-Type", 459, T.ENUMERATED, False, f"{_RFC8506} 8.50"),
    ("User-Equipment-Info-Value", 460, T.OCTET_STRING, False, f"{_RFC8506} 8.51"),
    ("Service-Context-Id", 461, T.UTF8_STRING, True, f"{_RFC8506} 8.42"),
)

_3GPP: Final[tuple[tuple[str, int, AvpType, bool, str], ...]] = (
    # TS 29.061 section 16.4.7 (the 3GPP- AVPs of PS-Information)
    ("3GPP-Charging-Id", 2, T.OCTET_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-PDP-Type", 3, T.ENUMERATED, True, f"{_TS29061} 16.4.7"),
    ("3GPP-GPRS-Negotiated-QoS-Profile", 5, T.UTF8_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-IMSI-MCC-MNC", 8, T.UTF8_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-GGSN-MCC-MNC", 9, T.UTF8_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-NSAPI", 10, T.OCTET_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-Selection-Mode", 12, T.UTF8_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-Charging-Characteristics", 13, T.UTF8_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-SGSN-MCC-MNC", 18, T.UTF8_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-RAT-Type", 21, T.OCTET_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-User-Location-Info", 22, T.OCTET_STRING, True, f"{_TS29061} 16.4.7"),
    ("3GPP-MS-TimeZone", 23, T.OCTET_STRING, True, f"{_TS29061} 16.4.7"),
    # TS 32.299 section 7.2
    ("Event-Type", 823, T.GROUPED, True, f"{_TS32299} 7.2.59"),
    ("Event", 825, T.UTF8_STRING, True, f"{_TS32299} 7.2.55"),
    ("Role-Of-Node", 829, T.ENUMERATED, True, f"{_TS32299} 7.2.189"),
    ("Calling-Party-Address", 831, T.UTF8_STRING, True, f"{_TS32299} 7.2.36"),
    ("Called-Party-Address", 832, T.UTF8_STRING, True, f"{_TS32299} 7.2.35"),
    ("Time-Stamps", 833, T.GROUPED, True, f"{_TS32299} 7.2.229"),
    ("SIP-Request-Timestamp", 834, T.TIME, True, f"{_TS32299} 7.2.204"),
    ("SIP-Response-Timestamp", 835, T.TIME, True, f"{_TS32299} 7.2.206"),
    ("IMS-Charging-Identifier", 841, T.UTF8_STRING, True, f"{_TS32299} 7.2.77"),
    ("GGSN-Address", 847, T.ADDRESS, True, f"{_TS32299} 7.2.70"),
    ("Node-Functionality", 862, T.ENUMERATED, True, f"{_TS32299} 7.2.115"),
    ("Time-Quota-Threshold", 868, T.UNSIGNED32, True, f"{_TS32299} 7.2.228"),
    ("Volume-Quota-Threshold", 869, T.UNSIGNED32, True, f"{_TS32299} 7.2.252"),
    ("Trigger-Type", 870, T.ENUMERATED, True, f"{_TS32299} 7.2.237"),
    ("Quota-Holding-Time", 871, T.UNSIGNED32, True, f"{_TS32299} 7.2.175"),
    ("Reporting-Reason", 872, T.ENUMERATED, True, f"{_TS32299} 7.2.186"),
    ("Service-Information", 873, T.GROUPED, True, f"{_TS32299} 7.2.194"),
    ("PS-Information", 874, T.GROUPED, True, f"{_TS32299} 7.2.158"),
    ("IMS-Information", 876, T.GROUPED, True, f"{_TS32299} 7.2.79"),
    ("Quota-Consumption-Time", 881, T.UNSIGNED32, True, f"{_TS32299} 7.2.174"),
    ("Address-Data", 897, T.UTF8_STRING, True, f"{_TS32299} 7.2.4"),
    ("Address-Domain", 898, T.GROUPED, True, f"{_TS32299} 7.2.5"),
    ("Address-Type", 899, T.ENUMERATED, True, f"{_TS32299} 7.2.6"),
    ("Charging-Rule-Base-Name", 1004, T.UTF8_STRING, True, "3GPP TS 29.212 5.3.5"),
    ("Recipient-Address", 1201, T.GROUPED, False, f"{_TS32299} 7.2.179"),
    ("Submission-Time", 1202, T.TIME, False, f"{_TS32299} 7.2.215"),
    ("Unit-Quota-Threshold", 1226, T.UNSIGNED32, False, f"{_TS32299} 7.2.238"),
    ("PDP-Address", 1227, T.ADDRESS, False, f"{_TS32299} 7.2.152"),
    ("SGSN-Address", 1228, T.ADDRESS, False, f"{_TS32299} 7.2.198"),
    ("Trigger", 1264, T.GROUPED, False, f"{_TS32299} 7.2.236"),
    ("SMS-Information", 2000, T.GROUPED, False, f"{_TS32299} 7.2.209"),
    ("Data-Coding-Scheme", 2001, T.INTEGER32, False, f"{_TS32299} 7.2.43"),
    ("SM-Message-Type", 2007, T.ENUMERATED, False, f"{_TS32299} 7.2.204"),
    ("Originator-SCCP-Address", 2008, T.ADDRESS, False, f"{_TS32299} 7.2.146"),
    ("Originator-Interface", 2009, T.GROUPED, False, f"{_TS32299} 7.2.144"),
    ("SMS-Node", 2016, T.ENUMERATED, False, f"{_TS32299} 7.2.210"),
    ("SMSC-Address", 2017, T.ADDRESS, False, f"{_TS32299} 7.2.208"),
    ("Remaining-Balance", 2021, T.GROUPED, True, f"{_TS32299} 7.2.183"),
    ("Recipient-Info", 2026, T.GROUPED, False, f"{_TS32299} 7.2.180"),
    ("Originator-Received-Address", 2027, T.GROUPED, False, f"{_TS32299} 7.2.145"),
    ("Start-Time", 2041, T.TIME, False, f"{_TS32299} 7.2.212"),
    ("Stop-Time", 2042, T.TIME, False, f"{_TS32299} 7.2.214"),
    ("Serving-Node-Type", 2047, T.ENUMERATED, False, f"{_TS32299} 7.2.200"),
    ("PDN-Connection-Charging-ID", 2050, T.UNSIGNED32, False, f"{_TS32299} 7.2.154"),
    ("Dynamic-Address-Flag", 2051, T.ENUMERATED, False, f"{_TS32299} 7.2.49"),
    ("AoC-Request-Type", 2055, T.ENUMERATED, False, f"{_TS32299} 7.2.17"),
    ("Node-Id", 2064, T.UTF8_STRING, False, f"{_TS32299} 7.2.116"),
    ("Charging-Characteristics-Selection-Mode", 2066, T.ENUMERATED, False, f"{_TS32299} 7.2.38"),
    ("SGW-Address", 2067, T.ADDRESS, False, f"{_TS32299} 7.2.199"),
)

# WIRE.md extensions (section 5.6 and section 8): vendor VENDOR_OCS, no M bit.
_OCS: Final[tuple[tuple[str, int, AvpType, bool, str], ...]] = (
    ("Linked-Rating-Group", 1, T.UNSIGNED32, False, "WIRE.md 5.6"),
    ("Account-Operation", 2, T.ENUMERATED, False, "WIRE.md 8"),
    ("Account-Id", 3, T.UTF8_STRING, False, "WIRE.md 8"),
    ("Amount", 4, T.INTEGER64, False, "WIRE.md 8"),
    ("Credit-Limit", 5, T.INTEGER64, False, "WIRE.md 8"),
    ("Account-Status", 6, T.ENUMERATED, False, "WIRE.md 8"),
    ("Operation-Id", 7, T.UTF8_STRING, False, "WIRE.md 8"),
    ("Account", 8, T.GROUPED, False, "WIRE.md 8"),
    ("Balance", 9, T.INTEGER64, False, "WIRE.md 8"),
    ("Reserved", 10, T.INTEGER64, False, "WIRE.md 8"),
    ("Session-Count", 11, T.UNSIGNED32, False, "WIRE.md 8"),
    ("Cdr-File", 12, T.UTF8_STRING, False, "docs/protocol.md, CDR_ROTATE"),
    ("Catalog", 13, T.GROUPED, False, "docs/protocol.md, CATALOG_SHOW"),
    ("Catalog-Name", 14, T.UTF8_STRING, False, "docs/protocol.md, CATALOG_SHOW"),
    ("Catalog-Digest", 15, T.UTF8_STRING, False, "docs/protocol.md, CATALOG_SHOW"),
    ("Catalog-Since", 16, T.TIME, False, "docs/protocol.md, CATALOG_SHOW"),
    ("Catalog-Source", 17, T.UTF8_STRING, False, "docs/protocol.md, CATALOG_SHOW"),
    ("Estimate", 18, T.ENUMERATED, False, "docs/protocol.md, Estimate"),
    ("Listed-Account-Id", 19, T.UTF8_STRING, False, "docs/protocol.md, LIST"),
    ("History-Limit", 50, T.UNSIGNED32, False, "docs/protocol.md, HISTORY"),
    ("History-Before", 51, T.UNSIGNED64, False, "docs/protocol.md, HISTORY"),
    ("Movement", 52, T.GROUPED, False, "docs/protocol.md, HISTORY"),
    ("Movement-Sequence", 53, T.UNSIGNED64, False, "docs/protocol.md, HISTORY"),
    ("Movement-Kind", 54, T.ENUMERATED, False, "docs/protocol.md, HISTORY"),
    ("Movement-Units", 55, T.UNSIGNED64, False, "docs/protocol.md, HISTORY"),
    ("Movement-Record", 56, T.UNSIGNED64, False, "docs/protocol.md, HISTORY"),
    ("Movement-Count", 57, T.UNSIGNED64, False, "docs/protocol.md, HISTORY"),
    ("Bulk-Account", 58, T.GROUPED, False, "docs/protocol.md, CREATE_BULK"),
    ("Bulk-Result", 59, T.GROUPED, False, "docs/protocol.md, CREATE_BULK"),
    # offers (docs/protocol.md, Extension: offers): codes 20-29
    ("Offer-Name", 20, T.UTF8_STRING, False, "docs/protocol.md, offers"),
    ("Offer-Balance", 21, T.GROUPED, False, "docs/protocol.md, offers"),
    ("Allowance-Name", 22, T.UTF8_STRING, False, "docs/protocol.md, offers"),
    ("Allowance-Rating-Group", 23, T.UNSIGNED32, False, "docs/protocol.md, offers"),
    ("Allowance-Units", 24, T.UNSIGNED64, False, "docs/protocol.md, offers"),
    ("Allowance-Reserved", 25, T.UNSIGNED64, False, "docs/protocol.md, offers"),
    ("Balance-Expiry", 26, T.TIME, False, "docs/protocol.md, offers"),
    ("Offer-Status", 27, T.ENUMERATED, False, "docs/protocol.md, offers"),
    # loans: codes 40-49 (docs/protocol.md, LOAN)
    ("Loan", 40, T.GROUPED, False, "docs/protocol.md, LOAN"),
    ("Loan-Id", 41, T.UTF8_STRING, False, "docs/protocol.md, LOAN"),
    ("Loan-Amount", 42, T.INTEGER64, False, "docs/protocol.md, LOAN"),
    ("Loan-Fee", 43, T.INTEGER64, False, "docs/protocol.md, LOAN"),
    ("Loan-Time", 44, T.TIME, False, "docs/protocol.md, LOAN"),
    ("Loan-Principal-Due", 45, T.INTEGER64, False, "docs/protocol.md, LOAN"),
    ("Loan-Fee-Due", 46, T.INTEGER64, False, "docs/protocol.md, LOAN"),
    ("Loan-Balance", 47, T.INTEGER64, False, "docs/protocol.md, LOAN"),
    # groups: docs/protocol.md, "Extension: shared group packages" (codes 30-39)
    ("Group-Account-Id", 30, T.UTF8_STRING, False, "docs/protocol.md, GROUP_JOIN"),
    ("Package-Name", 31, T.UTF8_STRING, False, "docs/protocol.md, GROUP_JOIN"),
    ("Statement", 32, T.GROUPED, False, "docs/protocol.md, STATEMENT"),
    ("Statement-Service", 33, T.GROUPED, False, "docs/protocol.md, STATEMENT"),
    ("Service-Name", 34, T.UTF8_STRING, False, "docs/protocol.md, STATEMENT"),
    ("Used-Units", 35, T.UNSIGNED64, False, "docs/protocol.md, STATEMENT"),
    ("Usage-Charge", 36, T.INTEGER64, False, "docs/protocol.md, STATEMENT"),
    ("Share", 37, T.INTEGER64, False, "docs/protocol.md, STATEMENT"),
    ("Period-Start", 38, T.TIME, False, "docs/protocol.md, STATEMENT"),
    ("Period-End", 39, T.TIME, False, "docs/protocol.md, STATEMENT"),
    # load-modulated prices (codes 80-84 reserved for them)
    ("Load-Band", 80, T.UTF8_STRING, False, "docs/protocol.md, Load-modulated prices"),
    ("Load-Factor", 81, T.UTF8_STRING, False, "docs/protocol.md, Load-modulated prices"),
    # status-policy (docs/protocol.md, *Extension: service control by account state*): 60-69
    ("Account-State", 60, T.UTF8_STRING, False, "docs/protocol.md, account state"),
    ("Inhibit-Threshold", 61, T.INTEGER64, False, "docs/protocol.md, account state"),
    ("Notify-Threshold", 62, T.INTEGER64, False, "docs/protocol.md, account state"),
    ("Low-Balance-Indication", 63, T.ENUMERATED, False, "docs/protocol.md, account state"),
    ("Usage-Counter", 85, T.GROUPED, False, "docs/protocol.md, usage counters"),
    ("Counter-Name", 86, T.UTF8_STRING, False, "docs/protocol.md, usage counters"),
    ("Counter-Unit", 87, T.ENUMERATED, False, "docs/protocol.md, usage counters"),
    ("Counter-Value", 88, T.UNSIGNED64, False, "docs/protocol.md, usage counters"),
    ("Counter-Threshold", 89, T.UNSIGNED64, False, "docs/protocol.md, usage counters"),
)


def _build() -> tuple[dict[str, AvpDef], dict[tuple[int, int], AvpDef]]:
    by_name: dict[str, AvpDef] = {}
    by_code: dict[tuple[int, int], AvpDef] = {}
    for vendor, rows in ((VENDOR_IETF, _BASE), (VENDOR_3GPP, _3GPP), (VENDOR_OCS, _OCS)):
        for name, code, kind, mandatory, source in rows:
            avp = AvpDef(
                name=name, code=code, vendor_id=vendor, type=kind, mandatory=mandatory,
                source=source,
            )  # fmt: skip
            if name in by_name or (code, vendor) in by_code:
                raise ValueError(f"AVP {name} ({code}, vendor {vendor}) defined twice")
            by_name[name] = avp
            by_code[(code, vendor)] = avp
    return by_name, by_code


#: AVP name -> definition; (code, Vendor-Id) -> definition (Vendor-Id 0 without the V bit).
BY_NAME, BY_CODE = _build()

__all__ = ["BY_CODE", "BY_NAME", "VENDOR_3GPP", "VENDOR_OCS", "AvpDef", "AvpType"]
