"""`ocs status`: what a running server is doing, for a person (or `--json`).

It asks the server's metrics listener (`ocs serve --metrics [HOST:]PORT`) for `/status` over
HTTP: uptime, peers, sessions and the money their reservations hold, accounts, the catalog in
force, the journal, the last checkpoint, the CDR file being written, and the requests and
answers counted since the start (docs/operations.md, *Metrics and status*). Exit status 0 when
the server answered, 1 when it could not be reached or did not answer a status.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from ocs.cli.args import DEFAULT_METRICS_PORT, metrics_address

TIMEOUT_S = 5.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="summary of a running server (through its --metrics listener)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--metrics",
        type=metrics_address,
        default=("127.0.0.1", DEFAULT_METRICS_PORT),
        metavar="[HOST:]PORT",
        help=f"the server's metrics listener (default 127.0.0.1:{DEFAULT_METRICS_PORT})",
    )
    p.add_argument("--json", action="store_true", help="the /status document as it came")
    p.set_defaults(func=run)


def fetch_status(host: str, port: int, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """GET /status of the metrics listener at HOST:PORT. Raises `OSError` (unreachable, or an
    answer that is no status document)."""
    where = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{where}:{port}/status", timeout=timeout_s) as response:
        doc = json.loads(response.read())
    if not isinstance(doc, dict) or "version" not in doc:
        raise OSError("the answer is not a status document")
    return doc


def run(args: argparse.Namespace) -> int:
    host, port = args.metrics
    try:
        doc = fetch_status(host, port)
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"ocs status: cannot get the status from {host}:{port}: {reason}", file=sys.stderr)
        print(
            "(is the server running with --metrics at that address?)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(format_status(doc))
    return 0


def money(micros: int, currency: str) -> str:
    """Micro-units as currency units, exactly (no float): 1234500 EUR -> "1.234500 EUR"."""
    sign = "-" if micros < 0 else ""
    units, rest = divmod(abs(micros), 1_000_000)
    return f"{sign}{units}.{rest:06d} {currency}"


def duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {s:02d}s"
    return f"{minutes}m {s:02d}s"


def when(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_status(doc: dict[str, Any]) -> str:
    """The status document as a person reads it, one line per subject."""
    lines = [f"ocs {doc['origin_host']} on {doc['listen'] or '(not listening)'}"]

    def row(name: str, value: str) -> None:
        lines.append(f"  {name:<11} {value}")

    state = "ready" if doc["ready"] else "NOT READY (starting or stopping)"
    row("state", f"{state}, up {duration(doc['uptime_s'])} (since {when(doc['started_at_s'])})")
    peers: dict[str, int] = doc["peers"]
    listed = ", ".join(f"{p} ({n})" for p, n in sorted(peers.items())) or "none"
    row("peers", f"{len(peers)}: {listed}; {_plural(doc['connections'], 'connection')} in all")
    refused = {k: v for k, v in doc["refusals"].items() if v}
    if refused or doc["tls_handshake_failures"]:
        parts = [f"{k} {v}" for k, v in sorted(refused.items())]
        if doc["tls_handshake_failures"]:
            parts.append(f"TLS handshakes failed {doc['tls_handshake_failures']}")
        row("refused", ", ".join(parts))
    row(
        "sessions",
        f"{doc['sessions']} open; {_plural(doc['reservations'], 'reservation')} holding "
        f"{money(doc['reserved_micros'], doc['currency'])}; "
        f"{_plural(doc['accounts'], 'account')}",
    )
    row(
        "catalog",
        f"{doc['catalog_name']} version {doc['catalog_version']} ({doc['currency']}), "
        f"sha256 {doc['catalog_sha256'][:16]}",
    )
    row(
        "journal",
        f"last LSN {doc['journal_last_lsn']} (durable {doc['journal_durable_lsn']}); "
        f"{doc['records_since_checkpoint']} records since the last checkpoint; "
        f"{doc['fsyncs']} fsyncs for {doc['group_commit_batches']} batches",
    )
    cp = doc["checkpoints"]
    if cp["last_lsn"] is None:
        last = "none yet"
    elif cp["last_at_s"] is None:
        last = f"LSN {cp['last_lsn']} (before this start)"
    else:
        last = f"LSN {cp['last_lsn']} at {when(cp['last_at_s'])}"
    row(
        "checkpoint",
        f"{last}; since start {cp['written']} written, {cp['failed']} failed, "
        f"{cp['skipped']} skipped",
    )
    row(
        "CDRs",
        f"sequence {doc['cdr_sequence']} (durable {doc['cdr_durable_sequence']}), "
        f"{doc['cdrs_written']} written since start; file {doc['cdr_file'] or 'none open'}",
    )
    requests: dict[str, int] | None = doc.get("requests")
    if requests is not None:
        row("requests", ", ".join(f"{c} {n}" for c, n in requests.items()) or "none")
        for command, codes in doc.get("answers", {}).items():
            row("answers", f"{command}: " + ", ".join(f"{c}: {n}" for c, n in codes.items()))
        if doc.get("latency_mean_ms") is not None:
            row("latency", f"mean {doc['latency_mean_ms']} ms (histogram in /metrics)")
    sent = {k: v for k, v in doc["server_requests"].items() if v}
    if sent or doc["inputs_failed"]:
        parts = [f"{k} sent {v}" for k, v in sorted(sent.items())]
        if doc["inputs_failed"]:
            parts.append(f"inputs failed (rolled back) {doc['inputs_failed']}")
        row("other", ", ".join(parts))
    return "\n".join(lines)
