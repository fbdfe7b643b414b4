"""What a running node shows of itself: the figures a scrape reads, and the HTTP listener that
serves them (`--metrics HOST:PORT`; docs/operations.md, *Metrics and status*).

Paths: ``/metrics`` (Prometheus text exposition), ``/ready`` (200 once recovered and
listening, 503 before and while stopping), ``/status`` (JSON: the figures and a summary of
the counters; what `ocs status` prints). Everything is read on the event loop when asked: the
request path only keeps the counters of `ocs.edge.metrics.Metrics`.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ocs.core.charging import catalog_digest
from ocs.edge.http import HttpListener, Response, text
from ocs.edge.metrics import (
    CONTENT_TYPE_LATEST,
    Figures,
    Metrics,
    MetricsCollector,
    command_label,
    exposition,
    result_label,
)

if TYPE_CHECKING:
    from ocs.node import Node

#: The version of the `/status` document (a field added keeps it; a field changed bumps it).
STATUS_VERSION = 1


@lru_cache(maxsize=4)
def _sha256(catalog_text: str) -> str:
    """The catalog's digest, as `ocs catalog show` gives it (cached: a scrape needs it once)."""
    return catalog_digest(catalog_text)


def figures(node: Node) -> Figures:
    """The node's figures now (on the loop: the core is not changing meanwhile)."""
    core, ledger, store, server = node.core, node.core.ledger, node.store, node.server
    journal, cdrs = store.journal, node.cdrs
    catalog = core.catalog
    started = node.started_at_s
    current = cdrs.current_path
    return Figures(
        ready=node.ready,
        started_at_s=started,
        uptime_s=round(time.time() - started, 3),
        origin_host=server.config.origin_host,
        listen=node.address,
        catalog_name=catalog.name,
        catalog_version=catalog.version,
        catalog_sha256=_sha256(core.catalog_text),
        sessions=len(core.sessions),
        reservations=ledger.reservation_count,
        reserved_micros=sum(r.amount for r in ledger.reservations()),
        currency=catalog.currency.alpha or str(catalog.currency.code),
        accounts=ledger.account_count,
        journal_last_lsn=journal.last_lsn,
        journal_written_lsn=journal.written_lsn,
        journal_durable_lsn=journal.durable_lsn,
        records_since_checkpoint=store.records_since_checkpoint,
        group_commit_batches=node.commit.batches,
        fsyncs=node.commit.syncs,
        checkpoints=node.checkpoints,
        cdr_sequence=core.cdr_seq,
        cdr_written_sequence=cdrs.written_sequence,
        cdr_durable_sequence=cdrs.durable_sequence,
        cdrs_written=cdrs.written_sequence - node.cdrs_at_start,
        cdr_file=str(current) if current is not None else None,
        inputs_failed=node.stats["failed"],
        server_requests={"RE_AUTH": node.stats["rar"], "ABORT_SESSION": node.stats["asr"]},
        connections=len(server.connections),
        peers=server.peer_connections(),
        refusals=dict(server.stats),
        tls_handshake_failures=server.tls_handshake_failures,
        load_band=core.load_pricing.band_name(),
    )


def status_document(node: Node) -> dict[str, Any]:
    """The `/status` document: the figures, and the counters summed by command and result."""
    doc: dict[str, Any] = {"version": STATUS_VERSION, **figures(node).as_json()}
    metrics = node.metrics
    if metrics is not None:
        doc["requests"] = {command_label(c): n for c, n in sorted(metrics.requests.items())}
        answers: dict[str, dict[str, int]] = {}
        for (c, rc), n in sorted(metrics.answers.items()):
            name = result_label(rc)
            answers.setdefault(command_label(c), {})[f"{rc} {name}".strip()] = n
        doc["answers"] = answers
        latency = metrics.latency_s
        doc["latency_mean_ms"] = (
            round(latency.total / latency.count * 1000, 3) if latency.count else None
        )
    return doc


def metrics_listener(node: Node, host: str, port: int) -> HttpListener:
    """The HTTP listener of `node`'s metrics, readiness and status."""
    metrics = node.metrics if node.metrics is not None else Metrics()
    collector = MetricsCollector(metrics, lambda: figures(node))

    def scrape() -> Response:
        return Response(200, CONTENT_TYPE_LATEST, exposition(collector))

    def ready() -> Response:
        return text(200, "ready\n") if node.ready else text(503, "not ready\n")

    def status() -> Response:
        body = json.dumps(status_document(node), sort_keys=True).encode()
        return Response(200, "application/json", body)

    return HttpListener(
        host=host, port=port, routes={"/metrics": scrape, "/ready": ready, "/status": status}
    )
