"""The load generator's pure parts: percentiles, request templates, the mix, the report."""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from pathlib import Path

import pytest

from ocs.tools.load.config import KINDS, parse_mix
from ocs.tools.load.measure import LoadResult, latency_summary, percentile, proc_cpu_seconds
from ocs.tools.load.report import write_histogram_png
from ocs.tools.load.traffic import FrameTemplate, flow_bodies, flow_weights, msisdn
from protocol.codec import decode_body
from protocol.codes import CCRequestType, CommandCode, Flag
from protocol.errors import ProtocolError
from protocol.header import unpack_header
from protocol.messages import CCR


def test_percentile_nearest_rank_on_a_known_sample() -> None:
    sample = [float(i) for i in range(1, 1001)]  # 1 .. 1000
    assert percentile(sample, 50) == 500.0
    assert percentile(sample, 99) == 990.0
    assert percentile(sample, 99.9) == 999.0
    assert percentile(sample, 100) == 1000.0
    assert percentile(sample, 0.1) == 1.0
    small = [3.0, 7.0, 9.0]
    assert [percentile(small, q) for q in (1, 33.3, 33.4, 66.7, 67, 100)] == [
        3.0,
        3.0,
        7.0,
        9.0,
        9.0,
        9.0,
    ]
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile(sample, 0)


def test_latency_summary_sorts_and_handles_no_samples() -> None:
    shuffled = [float((i * 7919) % 1000 + 1) for i in range(1000)]  # 1..1000, permuted
    assert sorted(shuffled) == [float(i) for i in range(1, 1001)]
    s = latency_summary(shuffled)
    assert (s["p50_ms"], s["p99_ms"], s["p999_ms"], s["max_ms"]) == (500.0, 990.0, 999.0, 1000.0)
    assert s["mean_ms"] == pytest.approx(500.5)
    assert set(latency_summary([]).values()) == {None}


@pytest.mark.parametrize("kind", KINDS)
def test_templates_render_valid_ccr_frames(kind: str) -> None:
    origin = "lg000001-0003.bench.local"
    prefix = f"{origin};1700000000;".encode()
    sid = prefix + b"%010d" % 42
    sub = msisdn(123, 45).encode()
    bodies = flow_bodies(kind, origin, updates=2)
    numbers = []
    for step, body in enumerate(bodies):
        template = FrameTemplate(body, len(sid), len(sub))
        frame = template.render(0xDEADBEEF, sid, sub)
        header = unpack_header(frame)
        assert frame[0] == 0x4D and header.length == len(frame)
        assert header.command_code == CommandCode.CREDIT_CONTROL and header.application_id == 4
        assert header.flags == Flag.REQUEST | Flag.PROXIABLE
        assert header.hop_by_hop == header.end_to_end == 0xDEADBEEF
        ccr = decode_body(CommandCode.CREDIT_CONTROL, True, frame[20:])
        assert isinstance(ccr, CCR)
        assert ccr.session_id == sid.decode() and ccr.origin_host == origin
        if ccr.cc_request_type in (CCRequestType.INITIAL, CCRequestType.EVENT):
            assert ccr.subscription_id is not None
            assert ccr.subscription_id[0].subscription_id_data == sub.decode()
        else:
            assert ccr.subscription_id is None
        if step == 0:
            assert ccr.cc_request_type in (CCRequestType.INITIAL, CCRequestType.EVENT)
        numbers.append(ccr.cc_request_number)
    assert numbers == list(range(len(bodies)))  # 0, then +1 per UPDATE/TERMINATION


def test_template_holes_have_a_fixed_length() -> None:
    """The holes are patched without re-encoding: a value of another length breaks the
    MessagePack string header and the body no longer decodes (3009)."""
    body = flow_bodies("data", "o.local", 1)[0]
    template = FrameTemplate(body, 20, 15)
    frame = template.render(1, b"x" * 20, b"1" * 14)
    with pytest.raises(ProtocolError) as info:
        decode_body(CommandCode.CREDIT_CONTROL, True, frame[20:])
    assert info.value.result_code == 3009


def test_mix_is_a_share_of_requests() -> None:
    mix = parse_mix("data=70, sms=20,voice=10")
    assert mix == (("data", 70.0), ("sms", 20.0), ("voice", 10.0))
    cumulative, lengths = flow_weights(mix, updates=2)
    probs = [cumulative[0]] + [b - a for a, b in itertools.pairwise(cumulative)]
    requests = [p * n for p, n in zip(probs, lengths, strict=True)]
    total = sum(requests)
    by_kind = dict(zip(KINDS, (r / total for r in requests), strict=True))
    assert by_kind["data"] == pytest.approx(0.70)
    assert by_kind["voice"] == pytest.approx(0.10)
    assert by_kind["sms-session"] + by_kind["sms-event"] == pytest.approx(0.20)
    assert lengths == [len(flow_bodies(k, "o", 2)) for k in KINDS]
    for bad in ("", "data", "video=3", "data=-1", "data=0"):
        with pytest.raises(ValueError):
            parse_mix(bad)


def test_summary_counts_errors_and_rates() -> None:
    result = LoadResult(
        mode="closed",
        duration_s=2.0,
        answers=10,
        answers_total=12,
        sent_total=12,
        latencies_ms=[1.0, 2.0, 3.0, 4.0],
        errors={"5030": 2, "unanswered": 1},
        mscc_results={"2001": 9},
        final_unit_indications=0,
        server_requests={},
        requests_by_kind=dict.fromkeys(KINDS, 3),
        client_cpu_s=0.5,
        server_cpu_s=1.0,
        send_lag_max_ms=0.0,
        send_lag_mean_ms=0.0,
        processes=1,
        connections=2,
        concurrency=4,
        rate=None,
    )
    s = result.summary()
    assert s["answers_per_s"] == 5.0 and s["errors"] == 3
    assert s["p50_ms"] == 2.0 and s["p99_ms"] == 4.0
    assert s["server_cpu_percent"] == 50.0 and s["client_cpu_percent"] == 25.0


def test_proc_cpu_seconds_reads_this_process() -> None:
    spent = proc_cpu_seconds(os.getpid())
    assert spent is not None and spent >= 0
    assert proc_cpu_seconds(2**22 + 12345) is None  # above the default pid_max


def test_histogram_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "h.png"
    write_histogram_png(path, [0.5, 1.0, 1.2, 3.0, 40.0, 0.001, 5000.0])
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0
    idat = data.index(b"IDAT")
    (size,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + size])
    assert len(raw) == height * (1 + 3 * width)
