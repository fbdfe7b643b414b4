"""`ocs bench` end to end: short runs against a real server on 127.0.0.1 (never timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

REQUIRED = {
    "answers_per_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "errors",
    "errors_by_code",
    "echo_answers_per_s",
    "server_cpu_percent",
    "client_cpu_percent",
    "duration_s",
    "mode",
}


def run_bench(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "ocs", "bench", "--json", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_open_loop_short_run_reports_every_key_and_no_errors() -> None:
    report = run_bench(
        "--mode",
        "open",
        "--rate",
        "150",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--connections",
        "2",
        "--subscribers",
        "200",
        "--low-balance",
        "0.1",
    )
    assert report.keys() >= REQUIRED
    assert report["mode"] == "open" and report["duration_s"] == 2.0
    assert report["errors"] == 0 and report["errors_by_code"] == {}
    assert report["echo_answers_per_s"] is None
    assert report["provisioned"] == {"2001": 200}
    # the schedule was followed: 150/s for 2 s (loose bounds; this is not a speed test)
    assert 100 <= report["answers"] <= 450
    assert report["latency_samples"] > 0
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["p999_ms"] <= report["max_ms"]
    assert report["server_cpu_percent"] is not None and report["server_cpu_percent"] >= 0
    sent = report["requests_by_kind"]
    assert set(sent) == {"data", "voice", "sms-session", "sms-event"}
    assert sum(sent.values()) == report["requests_sent"] > 0
    assert report["mscc_results"].get("2001", 0) > 0


def test_closed_loop_with_echo_reports_both_servers() -> None:
    report = run_bench(
        "--mode",
        "closed",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--connections",
        "2",
        "--concurrency",
        "4",
        "--subscribers",
        "100",
        "--vs-echo",
        "--mix",
        "data=50,sms=50",
    )
    assert report.keys() >= REQUIRED
    assert report["mode"] == "closed" and report["errors"] == 0
    assert report["answers"] > 0 and report["echo_answers_per_s"] > 0
    assert report["echo"]["errors"] == 0
    assert report["echo_ratio"] == round(report["answers_per_s"] / report["echo_answers_per_s"], 3)
    assert report["requests_by_kind"]["voice"] == 0
