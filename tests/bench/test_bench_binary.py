"""`ocs bench --encoding diameter`: the load over standard Diameter bodies (WIRE.md 1.1), its
templates, and a short run against a real server on 127.0.0.1 (never timed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ocs.tools.load.config import KINDS
from ocs.tools.load.traffic import FrameTemplate, flow_bodies, msisdn
from protocol.avp import decode_avps
from protocol.codes import VERSION_DIAMETER, CCRequestType, CommandCode, Flag
from protocol.header import unpack_header
from protocol.messages import CCR
from tests.bench.test_bench_cli import REQUIRED, run_bench


@pytest.mark.parametrize("kind", KINDS)
def test_binary_templates_render_valid_ccr_frames(kind: str) -> None:
    """The same flows as the MessagePack templates, as binary AVPs with the holes patched."""
    origin = "lg000001-0003.bench.local"
    sid = f"{origin};1700000000;".encode() + b"%010d" % 42
    sub = msisdn(123, 45).encode()
    bodies = flow_bodies(kind, origin, updates=2)
    numbers = []
    for body in bodies:
        frame = FrameTemplate(body, len(sid), len(sub), VERSION_DIAMETER).render(7, sid, sub)
        header = unpack_header(frame)
        assert frame[0] == VERSION_DIAMETER and header.length == len(frame)
        assert header.command_code == CommandCode.CREDIT_CONTROL and header.application_id == 4
        assert header.flags == Flag.REQUEST | Flag.PROXIABLE
        ccr = decode_avps(CommandCode.CREDIT_CONTROL, True, frame[20:])
        assert isinstance(ccr, CCR)
        assert ccr.session_id == sid.decode() and ccr.origin_host == origin
        if ccr.cc_request_type in (CCRequestType.INITIAL, CCRequestType.EVENT):
            assert ccr.subscription_id is not None
            assert ccr.subscription_id[0].subscription_id_data == sub.decode()
        numbers.append(ccr.cc_request_number)
    assert numbers == list(range(len(bodies)))


def test_closed_loop_over_binary_bodies_has_no_errors() -> None:
    """Provisioning (AMR), the CER and every CCR in binary AVPs; answers read in binary."""
    report = run_bench(
        "--encoding",
        "diameter",
        "--mode",
        "closed",
        "--concurrency",
        "4",
        "--duration",
        "1.5",
        "--warmup",
        "0.3",
        "--connections",
        "2",
        "--subscribers",
        "100",
        "--low-balance",
        "0.1",
    )
    assert report.keys() >= REQUIRED
    assert report["errors"] == 0 and report["errors_by_code"] == {}
    assert report["provisioned"] == {"2001": 100}
    assert report["answers"] > 0
    assert set(report["requests_by_kind"]) == {"data", "voice", "sms-session", "sms-event"}
    assert report["mscc_results"].get("2001", 0) > 0


def test_binary_load_is_refused_against_the_echo_server() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ocs", "bench", "--encoding", "diameter", "--vs-echo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "MessagePack only" in out.stderr
