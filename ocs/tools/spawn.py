"""Start `ocs serve` (or the echo server) as a subprocess on a free port of 127.0.0.1.

One helper for the demo, the load generator's harness and the tests:

    with SpawnedServer(serve_argv("--catalog", "c.toml", data_dir=d), workdir) as server:
        ...  # started and ready: connect to 127.0.0.1:server.port
    # stopped: SIGTERM, then SIGKILL after the grace

The server is told `--listen 127.0.0.1:0 --ready-file FILE`; both `ocs serve` and
`python -m ocs.tools.echo` write the port they listen on to FILE (atomically: a temporary file
renamed into place) once they accept connections, and `start` waits for that file. If the
process exits first, `start` raises `ServerExited` with the exit status and the last lines of
the log; if the file does not come in time, it kills the process and raises `TimeoutError`.
Output goes to `WORKDIR/NAME.log` (appended to across restarts), or to the caller's own
stdout/stderr with `inherit_output=True`.

`stop` (or `terminate`, which insists the process was started) sends SIGTERM and waits,
SIGKILL after the grace; `kill` is SIGKILL at once: no flush, no checkpoint, no unlock (a
crash). `start` may be called again once the process has ended: a restart on the same command
line, hence the same data directory (the crash tests).

A TLS server: `serve_argv(..., tls=TlsServerConfig(...))` adds its `--tls-*` options; the ready
file and `address` are the same (connect with `ocs.edge.tls.client_context`).

Nothing in the product imports this module; the tests and tools do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from ocs.edge.tls import TlsServerConfig

LISTEN_ANY_PORT = "127.0.0.1:0"
READY_POLL_S = 0.02


class ServerExited(RuntimeError):
    """The server process ended before it was ready (the message has its log's tail)."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


def serve_argv(
    *extra: str,
    data_dir: Path | None = None,
    listen: str = LISTEN_ANY_PORT,
    log_json: bool = False,
    python: Sequence[str] | None = None,
    tls: TlsServerConfig | None = None,
) -> list[str]:
    """`python -m ocs serve --listen 127.0.0.1:0 [--data-dir D] [--log-json] [--tls-* ...]
    ...extra`.

    `python` replaces the interpreter (e.g. `[sys.executable, "-m", "cProfile", "-o", F]`).
    `tls` makes it a TLS server (`--tls-cert`, `--tls-key`, `--tls-client-ca`,
    `--tls-require-client-cert`; its timeouts stay the defaults). `extra` comes last: a
    repeated option (`--listen 127.0.0.1:PORT`) overrides."""
    argv = [*(python or (sys.executable,)), "-m", "ocs", "serve", "--listen", listen]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if log_json:
        argv.append("--log-json")
    if tls is not None:
        argv += ["--tls-cert", str(tls.cert_file)]
        if tls.key_file is not None:
            argv += ["--tls-key", str(tls.key_file)]
        if tls.client_ca_file is not None:
            argv += ["--tls-client-ca", str(tls.client_ca_file)]
        if tls.require_client_cert:
            argv.append("--tls-require-client-cert")
    return [*argv, *extra]


def echo_argv(
    *extra: str, listen: str = LISTEN_ANY_PORT, python: Sequence[str] | None = None
) -> list[str]:
    """`python -m ocs.tools.echo --listen 127.0.0.1:0 ...extra`."""
    return [*(python or (sys.executable,)), "-m", "ocs.tools.echo", "--listen", listen, *extra]


class SpawnedServer:
    """A server subprocess that writes its port to `--ready-file` (appended to `argv`).

    `workdir` holds `NAME.port` (the ready file) and `NAME.log`. `env` is added to this
    process's environment (with PYTHONUNBUFFERED=1). `cpus` pins the server to those CPUs.
    The process runs in its own session: a Ctrl-C of the caller does not reach it, the caller
    stops it."""

    def __init__(
        self,
        argv: Sequence[str],
        workdir: Path,
        *,
        name: str = "server",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        cpus: Sequence[int] | None = None,
        inherit_output: bool = False,
        ready_timeout: float = 60.0,
        stop_grace: float = 15.0,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.ready_file = workdir / f"{name}.port"
        self.log_path = workdir / f"{name}.log"
        self.argv = [*argv, "--ready-file", str(self.ready_file)]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.cpus = tuple(cpus) if cpus else None
        self.inherit_output = inherit_output
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.started_in = 0.0

    # --- state ---

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    # --- life cycle ---

    def start(self, timeout: float | None = None) -> Self:
        """Start the process and wait until it has written its port (a restart if it ran
        before and has ended)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.ready_file.unlink(missing_ok=True)
        self.port = 0
        started = time.monotonic()
        self.proc = self._popen()
        if self.cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, self.cpus)
        deadline = started + (self.ready_timeout if timeout is None else timeout)
        while not self.ready_file.exists():
            code = self.proc.poll()
            if code is not None:
                raise ServerExited(
                    f"{self.name} exited with {code} before it was ready{self._tail_note()}",
                    code,
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.name} did not become ready in time{self._tail_note()}")
            time.sleep(READY_POLL_S)
        self.started_in = time.monotonic() - started
        self.port = int(self.ready_file.read_text())
        return self

    def _popen(self) -> subprocess.Popen[bytes]:
        if self.inherit_output:
            return self._popen_with(None)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            return self._popen_with(log)

    def _popen_with(self, log: IO[bytes] | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
        )

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM, wait up to `grace` seconds (the charging server checkpoints on its way out),
        then SIGKILL. The exit status (negative: the signal), None if never started."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_grace if grace is None else grace)
            except subprocess.TimeoutExpired:
                self.kill()
        return proc.returncode

    def terminate(self, grace: float | None = None) -> int:
        """`stop` a process that was started: its exit status (0: a clean shutdown)."""
        code = self.stop(grace)
        if code is None:
            raise RuntimeError(f"{self.name} was never started")
        return code

    def kill(self) -> int | None:
        """SIGKILL (a crash) and reap; the exit status, None if never started."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        return proc.returncode

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.kill()

    # --- the log ---

    def log_text(self) -> str:
        """Everything the process (all its runs) wrote; "" with `inherit_output`."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _tail_note(self) -> str:
        if self.inherit_output:
            return " (its output is above)"
        tail = self.log_tail()
        return (
            f"; last lines of {self.log_path}:\n{tail}" if tail else f"; {self.log_path} is empty"
        )
