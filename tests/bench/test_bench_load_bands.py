"""`ocs bench` exercises load-modulated prices (issue 15 item 4): against a server whose
catalog puts RG 20 (the data flow's video grant) into a "busy" band after 20 grants a minute,
the report counts the answers' MSCCs by `Load-Band`, both bands present (never timed)."""

from __future__ import annotations

from pathlib import Path

from ocs.edge.catalog_files import demo_catalog_text
from tests.bench.test_bench_cli import run_bench
from tests.server.process import ServerProcess


def test_the_load_report_counts_grants_by_load_band(tmp_path: Path) -> None:
    demo = demo_catalog_text()
    assert "enter = 2000 " in demo and "leave = 1500 " in demo  # the demo's busy band
    catalog = tmp_path / "load.toml"
    catalog.write_text(
        demo.replace("enter = 2000 ", "enter = 20 ", 1).replace("leave = 1500 ", "leave = 15 ", 1)
    )
    server = ServerProcess(tmp_path / "data", "--catalog", str(catalog)).start()
    try:
        report = run_bench(
            "--server",
            f"127.0.0.1:{server.port}",
            "--server-pid",
            str(server.pid),
            "--mode",
            "open",
            "--rate",
            "150",
            "--duration",
            "2",
            "--warmup",
            "0",
            "--connections",
            "2",
            "--subscribers",
            "100",
            "--mix",
            "data=1",
        )
    finally:
        server.kill()
    assert report["errors"] == 0, report["errors_by_code"]
    bands = report["load_bands"]
    # the first 20 video grants of the minute are "normal", the next ones "busy"
    assert set(bands) == {"normal", "busy"}, bands
    assert bands["normal"] >= 1 and bands["busy"] >= 1
