"""``ocs journal show DATA_DIR`` and ``ocs journal check DATA_DIR``: read a server's journal,
changing nothing.

Both only read: they take no lock (they may run beside a running server, or on a directory that
refuses to start) and write, cut or delete nothing. Beside a running server, the batch being
written at that instant may show as a torn tail.

``show`` prints the records around a position, decoded: ``--lsn N`` (default: the last record)
and ``--around K`` records on either side (default 5). Each record: LSN, file and byte offset,
size, kind, and for the server's inputs (kind 2) the input kind, its time, Origin-Host,
End-to-End-Id, command and a summary of the body (top-level AVPs; strings quoted with escapes
and cut to 60 characters); ``--json`` prints one JSON object with the whole decoded bodies.
Bytes that are not the record expected there are shown where they are, with the reason, and
reading resumes at the next valid record.

``check`` runs what recovery checks, without applying anything: the latest snapshot's checksum,
the durability mark, every record's checksum, length and LSN after the snapshot, torn tail or
damage (docs/durability.md), and that every server input decodes. It says what the next start
will do. Exit status: 0 when it will start (cutting a torn tail, if there is one), 1 when it
will refuse (damage, or an input that does not decode), 2 when the directory cannot be read.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec

from ocs.core.charging import REQUEST_KINDS, InputKind, decode_input
from ocs.edge.journal import (
    RECORD_HEADER,
    JournalCorruptError,
    JournalRecord,
    Unreadable,
    iter_entries,
    list_segments,
    list_snapshots,
    read_mark,
    read_snapshot,
    scan,
    segment_name,
)
from ocs.node import KIND_CORE, record_kind
from protocol.codes import CommandCode

EXIT_OK: Final = 0
EXIT_DAMAGE: Final = 1
EXIT_UNREADABLE: Final = 2
_TEXT_CUT: Final = 60  # characters of a string value in a summary
_LINE_CUT: Final = 400  # characters of a summary
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "journal",
        help="inspect a data directory's journal (read-only)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="journal_command", required=True)

    show = sub.add_parser("show", help="print the records around a position, decoded")
    show.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    show.add_argument("--lsn", type=int, default=None, metavar="N", help="default: the last")
    show.add_argument("--around", type=_count, default=5, metavar="K", help="default: 5")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=_show)

    check = sub.add_parser("check", help="say whether the next start would cut or refuse")
    check.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=_check)


def _count(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _journal_dir(data_dir: Path) -> Path | None:
    directory = data_dir / "journal"
    if not directory.is_dir():
        print(f"error: {directory} is not a journal directory", file=sys.stderr)
        return None
    return directory


# --- show ----------------------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    directory = _journal_dir(args.data_dir)
    if directory is None:
        return EXIT_UNREADABLE
    around: int = args.around
    try:
        mark: int | str | None = read_mark(directory)
    except JournalCorruptError as exc:
        mark = f"damaged ({exc.reason})"
    entries: list[JournalRecord | Unreadable] = []
    if args.lsn is None:
        last: collections.deque[JournalRecord | Unreadable] = collections.deque()
        for entry in iter_entries(directory):
            last.append(entry)
            while last and _lsn(entry) - _lsn(last[0]) > around:
                last.popleft()
        entries = list(last)
    else:
        low, high = args.lsn - around, args.lsn + around
        entries = [e for e in iter_entries(directory) if low <= _lsn(e) <= high]
    snapshots = list_snapshots(directory)
    head: dict[str, Any] = {
        "journal": str(directory),
        "segments": [segment_name(first) for first in list_segments(directory)],
        "snapshot_lsn": snapshots[-1] if snapshots else None,
        "durable_mark": mark,
    }
    if args.json:
        head["entries"] = [_entry_json(e) for e in entries]
        print(json.dumps(head))
        return EXIT_OK
    print(
        f"journal {directory}: {len(head['segments'])} segment(s), snapshot at LSN "
        f"{head['snapshot_lsn'] or 'none'}, durability mark {_mark_text(mark)}"
    )
    if not entries:
        print("no records" if args.lsn is None else f"no record near LSN {args.lsn}")
    for entry in entries:
        print(_entry_text(entry))
    return EXIT_OK


def _lsn(entry: JournalRecord | Unreadable) -> int:
    return entry.lsn


def _mark_text(mark: int | str | None) -> str:
    if mark is None:
        return "none (a journal written before marks existed)"
    return f"LSN {mark}" if isinstance(mark, int) else mark


def _entry_json(entry: JournalRecord | Unreadable) -> dict[str, Any]:
    if isinstance(entry, Unreadable):
        out: dict[str, Any] = {
            "unreadable": True,
            "lsn": entry.lsn,
            "segment": entry.segment,
            "offset": entry.offset,
            "length": entry.length,
            "reason": entry.reason,
        }
        if entry.unverified is not None:
            out["unverified"] = _payload_json(entry.unverified)
        return out
    return {
        "lsn": entry.lsn,
        "segment": entry.segment,
        "offset": entry.offset,
        "size": RECORD_HEADER.size + len(entry.payload),
        **_payload_json(entry.payload),
    }


def _payload_json(payload: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": record_kind(payload)}
    if not payload or payload[0] != KIND_CORE:
        out["body_hex"] = payload[1:].hex()
        return out
    try:
        record = decode_input(payload[1:])
    except Exception as exc:  # damaged, or written by another build
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    decoded: dict[str, Any] = {
        "kind": record.kind.name,
        "now_ms": record.now_ms,
        "time": _time_text(record.now_ms),
    }
    if record.kind in REQUEST_KINDS:
        decoded.update(
            origin_host=record.origin_host,
            end_to_end=record.end_to_end,
            command=_command_name(record.command),
            **_body_json(record.body),
        )
    elif record.kind is InputKind.CATALOG:
        decoded.update(
            catalog_bytes=len(record.body),
            catalog_sha256=hashlib.sha256(record.body).hexdigest(),
        )
    out["input"] = decoded
    return out


def _entry_text(entry: JournalRecord | Unreadable) -> str:
    if isinstance(entry, Unreadable):
        line = (
            f"LSN {entry.lsn}?  {entry.segment}:{entry.offset}  UNREADABLE {entry.length} "
            f"bytes: {entry.reason}"
        )
        if entry.unverified is not None:
            line += f"\n    unverified content: {_payload_text(entry.unverified)}"
        return line
    size = RECORD_HEADER.size + len(entry.payload)
    where = f"LSN {entry.lsn}  {entry.segment}:{entry.offset} ({size} B)"
    return f"{where}  {_payload_text(entry.payload)}"


def _payload_text(payload: bytes) -> str:
    line = record_kind(payload)
    if not payload or payload[0] != KIND_CORE:
        return f"{line}  {payload[1:33].hex()}{'...' if len(payload) > 33 else ''}"
    try:
        record = decode_input(payload[1:])
    except Exception as exc:
        return f"{line}  ({type(exc).__name__}: {exc})"
    line = f"{line}  {_time_text(record.now_ms)}"
    if record.kind in REQUEST_KINDS:
        line += f"  origin={_cut(record.origin_host)} e2e={record.end_to_end}"
        line += f"  {_summary(record.body)}"
    elif record.kind is InputKind.CATALOG:
        line += f"  catalog {len(record.body)} bytes sha256 {_sha(record.body)}"
    return line


def _body_json(body: bytes) -> dict[str, Any]:
    try:
        return {"body": _jsonable(msgspec.msgpack.decode(body))}
    except msgspec.DecodeError as exc:
        return {"body_hex": body.hex(), "body_error": str(exc)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _summary(body: bytes) -> str:
    try:
        decoded = msgspec.msgpack.decode(body)
    except msgspec.DecodeError as exc:
        return f"(body does not decode: {exc})"
    if not isinstance(decoded, dict):
        return f"(body is a {type(decoded).__name__}, not a map)"
    parts = []
    for key, value in decoded.items():
        if isinstance(value, dict):
            shown = f"{{{len(value)} AVPs}}"
        elif isinstance(value, list):
            shown = f"[{len(value)}]"
        elif isinstance(value, str):
            shown = _cut(value)
        elif isinstance(value, bytes):
            shown = f"0x{value[:16].hex()}{'...' if len(value) > 16 else ''}"
        else:
            shown = repr(value)
        parts.append(f"{_key(key)}={shown}")
    text = " ".join(parts)
    return text if len(text) <= _LINE_CUT else text[: _LINE_CUT - 3] + "..."


def _key(key: object) -> str:
    """An AVP name as it is if it looks like one, else quoted and cut like a value."""
    text = str(key)
    plain = text.isascii() and text.isprintable() and len(text) <= _TEXT_CUT
    if plain and text and not any(c in text for c in " ='\""):
        return text
    return _cut(text)


def _cut(text: str) -> str:
    """A peer's string, safe on a terminal: quoted with escapes, at most 60 characters."""
    shown = repr(text[:_TEXT_CUT])
    return shown if len(text) <= _TEXT_CUT else f"{shown}...({len(text)} chars)"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _time_text(now_ms: int) -> str:
    try:
        moment = _EPOCH + timedelta(milliseconds=now_ms)
    except OverflowError:
        return f"now_ms={now_ms}"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _command_name(command: int) -> str | int:
    try:
        return CommandCode(command).name
    except ValueError:
        return command


# --- check ---------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    directory = _journal_dir(args.data_dir)
    if directory is None:
        return EXIT_UNREADABLE
    report: dict[str, Any] = {"journal": str(directory)}
    code = _run_check(directory, report)
    if args.json:
        print(json.dumps(report))
    else:
        for line in report["lines"]:
            print(line)
    return code


def _run_check(directory: Path, report: dict[str, Any]) -> int:
    lines: list[str] = []
    report["lines"] = lines
    snapshots = list_snapshots(directory)
    snapshot_lsn = snapshots[-1] if snapshots else 0
    report["snapshot_lsn"] = snapshot_lsn if snapshots else None
    try:
        if snapshots:
            read_snapshot(directory, snapshot_lsn)
        lines.append(
            f"snapshot: LSN {snapshot_lsn} (checksum holds)" if snapshots else "snapshot: none"
        )
        mark = read_mark(directory)
        report["durable_mark"] = mark
        lines.append(f"durability mark: {_mark_text(mark)}")
        segments = list_segments(directory)
        report["segments"] = [segment_name(first) for first in segments]
        records = scan(directory, segments, after_lsn=snapshot_lsn, mark=mark)
        count, first, undecodable = 0, None, []
        while True:
            try:
                record = next(records)
            except StopIteration as stop:
                end = stop.value
                break
            count += 1
            first = record.lsn if first is None else first
            if record.payload[:1] == bytes((KIND_CORE,)):
                try:
                    decode_input(record.payload[1:])
                except Exception as exc:
                    undecodable.append((record, f"{type(exc).__name__}: {exc}"))
    except JournalCorruptError as exc:
        report.update(
            verdict="damage",
            segment=exc.segment,
            offset=exc.offset,
            lsn=exc.lsn,
            reason=exc.reason,
            error=str(exc),
        )
        lines.append(f"DAMAGE: {exc}")
        lines.append(
            "the next start will refuse (startup.failed); see docs/operations.md, "
            "'The journal is damaged'"
        )
        return EXIT_DAMAGE
    except OSError as exc:
        report.update(verdict="unreadable", error=str(exc))
        lines.append(f"error: {exc}")
        return EXIT_UNREADABLE
    report.update(records=count, first_lsn=first, last_lsn=end.last_lsn)
    lines.append(
        f"records after the snapshot: {count}"
        + (f" (LSN {first}..{end.last_lsn})" if count else f" (last LSN {end.last_lsn})")
    )
    if undecodable:
        record, why = undecodable[0]
        report.update(
            verdict="undecodable",
            segment=record.segment,
            offset=record.offset,
            lsn=record.lsn,
            reason=why,
            undecodable=len(undecodable),
        )
        lines.append(
            f"UNDECODABLE: {len(undecodable)} server input(s); the first: LSN {record.lsn} "
            f"({record.segment} byte {record.offset}): {why}"
        )
        lines.append("the next start will refuse (startup.failed); see docs/operations.md")
        return EXIT_DAMAGE
    torn = end.torn
    if torn is None:
        report["verdict"] = "clean"
        lines.append("clean: the next start replays these records and cuts nothing")
        return EXIT_OK
    report.update(
        verdict="torn_tail",
        segment=torn.segment,
        offset=torn.offset,
        lsn=torn.lsn,
        dropped_bytes=torn.dropped_bytes,
        reason=torn.reason,
    )
    above = "above the durability mark" if mark is not None else "with no valid record after it"
    lines.append(
        f"torn tail: {torn.segment} from byte {torn.offset} ({torn.dropped_bytes} bytes, where "
        f"LSN {torn.lsn} would start: {torn.reason}), {above}: never made durable, so never "
        "acknowledged; the next start cuts it (recovery.torn_tail)"
    )
    return EXIT_OK
