"""What a run reports: the text report of `ocs bench` and the latency histogram as a PNG.
(The JSON report is the dict `ocs.tools.load.run.run_bench` returns.)"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ocs.tools.load.measure import percentile


def format_report(report: dict[str, Any]) -> str:
    """The human-readable report of `run_bench`."""

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}%"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    mode = report["mode"]
    shape = (
        f"{report['connections']} connections x {report['concurrency']} in flight"
        if mode == "closed"
        else f"{report['rate']:,.0f} requests/s over {report['connections']} connections"
    )
    hostile = report.get("hostile")
    measured = (
        f"{report['duration_s']:g} s measured after {report['warmup_s']:g} s warm-up"
        if not hostile
        else f"{report['duration_s']:g} s measured without and {hostile['with']['duration_s']:g}"
        f" s with a hostile neighbour, each run after {report['warmup_s']:g} s warm-up"
    )
    lines = [
        f"ocs bench: {mode} loop, {shape}, {report['client_processes']} client process(es), "
        f"{measured}",
        f"mix {report['mix']} by requests; {report['subscribers']:,} subscribers "
        f"({report['low_balance_subscribers']:,} with a low balance); "
        f"server CPUs {report['server_cpus']}, client CPUs {report['client_cpus']}; "
        f"machine busy before the run: {report['machine_busy_percent_before']}% of all CPUs",
        "",
        f"{'target':<16}{'answers/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}"
        f"{'server CPU':>12}{'per CPU-s':>11}{'client CPU':>12}{'errors':>8}",
        f"{'charging server':<16}{report['answers_per_s']:>11,.0f}{ms(report['p50_ms']):>9}"
        f"{ms(report['p99_ms']):>9}{ms(report['p999_ms']):>10}"
        f"{pct(report['server_cpu_percent']):>12}{num(report['answers_per_server_cpu_s']):>11}"
        f"{pct(report['client_cpu_percent']):>12}{report['errors']:>8}",
    ]
    if hostile:
        w = hostile["with"]
        lines.append(
            f"{'+ hostile peer':<16}{w['answers_per_s']:>11,.0f}{ms(w['p50_ms']):>9}"
            f"{ms(w['p99_ms']):>9}{ms(w['p999_ms']):>10}"
            f"{pct(w['server_cpu_percent']):>12}{num(w['answers_per_server_cpu_s']):>11}"
            f"{pct(w['client_cpu_percent']):>12}{w['errors']:>8}"
        )
    echo = report.get("echo")
    if echo:
        lines.append(
            f"{'echo server':<16}{echo['answers_per_s']:>11,.0f}{ms(echo['p50_ms']):>9}"
            f"{ms(echo['p99_ms']):>9}{ms(echo['p999_ms']):>10}"
            f"{pct(echo['server_cpu_percent']):>12}{num(echo['answers_per_server_cpu_s']):>11}"
            f"{pct(echo['client_cpu_percent']):>12}{echo['errors']:>8}"
        )
        per_cpu = report.get("echo_ratio_per_cpu")
        lines.append(
            f"charging / echo: {report['echo_ratio']:.1%} of answers/s"
            + (f", {per_cpu:.1%} per server CPU-second" if per_cpu is not None else "")
        )
    lines.append("")
    errs = report["errors_by_code"]
    lines.append("errors: " + (", ".join(f"{k}: {v}" for k, v in errs.items()) if errs else "none"))
    lines.append(
        f"requests sent by kind: {report['requests_by_kind']}; "
        f"MSCC results: {report['mscc_results']}; "
        f"Final-Unit-Indication: {report['final_unit_indications']}; "
        f"server requests: {report['server_requests'] or 'none'}"
    )
    if report.get("load_bands"):
        lines.append(f"grants and quotes by Load-Band: {report['load_bands']}")
    if mode == "open":
        lines.append(
            f"send lag behind schedule: mean {report['send_lag_mean_ms']:.3f} ms, "
            f"max {report['send_lag_max_ms']:.1f} ms"
        )
    if hostile:
        lines += ["", *format_hostile(report, hostile)]
    if report.get("histogram"):
        lines.append(f"latency histogram: {report['histogram']}")
    return "\n".join(lines)


def format_hostile(report: dict[str, Any], hostile: dict[str, Any]) -> list[str]:
    """The lines of the report on the hostile neighbour: the ratios, what the normal peers and
    the server showed with and without it, and what the neighbour counted."""

    def ratio(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    def mb(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f} MB"

    r = hostile["ratio"]
    w = hostile["with"]
    peer = hostile["peer"]
    order = ", ".join("with" if p["hostile"] else "without" for p in hostile["phases"])
    lines = [
        f"hostile peer {hostile['origin_host']} ({', '.join(hostile['kinds'])}); runs in order: "
        f"{order}",
        f"with / without: answers/s {ratio(r['answers_per_s'])}, p50 {ratio(r['p50_ms'])}, "
        f"p99 {ratio(r['p99_ms'])}, p99.9 {ratio(r['p999_ms'])}",
        "normal peers' errors with it: "
        + (", ".join(f"{k}: {v}" for k, v in w["errors_by_code"].items()) or "none"),
        f"server memory max {mb(report.get('server_rss_max_mb'))} without, "
        f"{mb(w.get('server_rss_max_mb'))} with; descriptors max "
        f"{report.get('server_fds_max') or '-'} without, {w.get('server_fds_max') or '-'} with",
        f"hostile peer: connections {peer['connections_opened']:,} opened, "
        f"{peer['connections_refused']:,} refused, {peer['cer_unanswered']:,} CER unanswered, "
        f"{peer['connections_closed_by_server']:,} "
        f"closed by the server, {peer['idle_closed_by_server']:,} idle ones closed by it"
        + (
            f" (after {peer['idle_lifetime_mean_s']:.2f} s on average)"
            if peer["idle_lifetime_mean_s"] is not None
            else ""
        ),
        f"  requests {peer['requests_sent']:,} sent ({peer['bytes_sent'] / 1e6:,.1f} MB), "
        f"answers {peer['answers_received']:,} "
        f"(5004: {peer['answers_5004']:,}, 5002: {peer['answers_5002']:,}, "
        f"3004: {peer['answers_3004']:,}; all: {peer['answers_by_code'] or 'none'})",
        f"  another peer's answers {peer['foreign_answers']:,}, accepted as another peer "
        f"{peer['accepted_as_other_peer']:,}, another peer's sessions changed "
        f"{peer['foreign_sessions_changed']:,}, Session-Ids taken {peer['session_ids_taken']:,}",
    ]
    for kind, tally in peer["by_kind"].items():
        lines.append(
            f"  {kind}: opened {tally['connections_opened']:,}, refused "
            f"{tally['connections_refused']:,}, requests {tally['requests_sent']:,}, answers "
            f"{tally['answers_received']:,} {tally['answers_by_code'] or ''}".rstrip()
        )
    return lines


# --- latency histogram as a PNG (no plotting library needed) --------------------------------

_GLYPHS: Final = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "m": "000000110111101",
    "s": "000011010001110",
    "p": "000111101111100",
    " ": "000000000000000",
}


def write_histogram_png(path: Path, latencies_ms: Sequence[float]) -> None:
    """A log-scale latency histogram (ms; the decades cover the samples) with p50 (blue), p99
    (orange) and p99.9 (red) marked, as an RGB PNG."""
    positive = [v for v in latencies_ms if v > 0]
    lo_exp = math.floor(math.log10(min(positive))) if positive else -2
    hi_exp = math.ceil(math.log10(max(positive))) if positive else 3
    lo_exp = max(lo_exp, -3)
    hi_exp = max(hi_exp, lo_exp + 1)
    lo_exp = max(lo_exp, hi_exp - 8)
    decades = hi_exp - lo_exp
    per_decade = 200 // decades
    nbins = decades * per_decade
    bar_w, margin_l, margin_b, margin_t, height = 4, 20, 30, 30, 300
    width = margin_l * 2 + nbins * bar_w
    counts = [0] * nbins
    for v in latencies_ms:
        pos = (_log10(max(v, 1e-9)) - lo_exp) * per_decade
        counts[min(max(int(pos), 0), nbins - 1)] += 1
    top = max(counts) if counts and max(counts) > 0 else 1
    px = [[(255, 255, 255)] * width for _ in range(height)]
    plot_h = height - margin_b - margin_t
    base_y = height - margin_b
    for i, c in enumerate(counts):
        h = round(plot_h * c / top)
        for y in range(base_y - h, base_y):
            for x in range(margin_l + i * bar_w, margin_l + i * bar_w + bar_w - 1):
                px[y][x] = (90, 90, 90)
    for x in range(margin_l, width - margin_l):
        px[base_y][x] = (0, 0, 0)

    def x_of(ms: float) -> int:
        pos = (_log10(max(ms, 1e-9)) - lo_exp) * per_decade * bar_w
        return margin_l + min(max(int(pos), 0), nbins * bar_w - 1)

    def text(s: str, x: int, y: int, color: tuple[int, int, int]) -> None:
        for ch in s:
            glyph = _GLYPHS.get(ch, _GLYPHS[" "])
            for gy in range(5):
                for gx in range(3):
                    if glyph[gy * 3 + gx] == "1":
                        for dy in range(2):
                            for dx in range(2):
                                yy, xx = y + gy * 2 + dy, x + gx * 2 + dx
                                if 0 <= yy < height and 0 <= xx < width:
                                    px[yy][xx] = color
            x += 8

    for d in range(decades + 1):
        value = 10.0 ** (lo_exp + d)
        x = margin_l + d * per_decade * bar_w
        x = min(x, width - margin_l - 1)
        for y in range(base_y, base_y + 5):
            px[y][x] = (0, 0, 0)
        label = f"{value:g}"
        text(label, max(0, x - 4 * len(label)), base_y + 8, (0, 0, 0))
    if latencies_ms:
        ordered = sorted(latencies_ms)
        marks = (
            ("p50", 50.0, (30, 90, 220)),
            ("p99", 99.0, (240, 140, 0)),
            ("p99.9", 99.9, (220, 30, 30)),
        )
        for n, (name, q, color) in enumerate(marks):
            x = x_of(percentile(ordered, q))
            for y in range(margin_t, base_y):
                px[y][x] = color
            text(name, margin_l + n * 60, 8, color)
        text("ms", margin_l + 3 * 60, 8, (0, 0, 0))
    raw = b"".join(b"\x00" + bytes(c for p in row for c in p) for row in px)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(png)


def _log10(v: float) -> float:
    return math.log10(v)
