"""Why a start-up failed, in words, and the exit status of `ocs serve` for it (docs/operations.md,
*Exit status*).

A failed start is logged once, as `startup.failed` (critical) with ``cause`` (one of `Cause`:
what kind of failure, a word an operator and a script can both match), ``error`` (what went
wrong, in a sentence that names the file, directory or address) and ``exit_status``; the
process then exits with that status. `failure` classifies an exception; `log_startup_failed`
writes the one event (the node's recovery writes it for what it raises, the command line for
what it checks before: the configuration, TLS files, the listening address).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
from pathlib import Path
from typing import Any, Final, NamedTuple

from ocs.edge.cdr_files import CdrCorruptError, CdrError, CdrSequenceError
from ocs.edge.journal import DataDirLockedError, JournalCorruptError, JournalError
from ocs.edge.tls import TlsConfigError
from rating import CatalogError

# an exception logged as `startup.failed` carries this attribute (set to True), so that the
# command line does not log it a second time
LOGGED_ATTRIBUTE: Final = "ocs_startup_logged"


class ExitStatus(enum.IntEnum):
    """The exit status of `ocs serve` (documented in docs/operations.md, *Exit status*)."""

    STOPPED = 0  # SIGTERM or SIGINT: stopped cleanly
    FAILED = 1  # failed while serving (journal, CDR files), or an unexpected error (a bug)
    USAGE = 2  # the command line or the --config file is wrong: nothing was touched
    CONFIG = 3  # a file the configuration names cannot be used: the catalog, TLS files
    LISTEN = 4  # cannot listen on the address (in use, not local, not permitted)
    LOCKED = 5  # the data directory is in use by another server
    DATA_DIR = 6  # the data directory cannot be created, written or locked (permissions, ...)
    RECOVERY = 7  # recovery refused: the journal or the CDR files are damaged or disagree


class Cause(enum.StrEnum):
    """The ``cause`` field of `startup.failed`."""

    CONFIGURATION = "configuration"
    CATALOG = "catalog"
    TLS = "tls"
    LISTEN = "listen"
    DATA_DIR_LOCKED = "data-directory-locked"
    DATA_DIR = "data-directory"
    RECOVERY = "recovery"
    INTERNAL = "internal"


EXIT_STATUS: Final[dict[Cause, ExitStatus]] = {
    Cause.CONFIGURATION: ExitStatus.USAGE,
    Cause.CATALOG: ExitStatus.CONFIG,
    Cause.TLS: ExitStatus.CONFIG,
    Cause.LISTEN: ExitStatus.LISTEN,
    Cause.DATA_DIR_LOCKED: ExitStatus.LOCKED,
    Cause.DATA_DIR: ExitStatus.DATA_DIR,
    Cause.RECOVERY: ExitStatus.RECOVERY,
    Cause.INTERNAL: ExitStatus.FAILED,
}


class ConfigurationError(ValueError):
    """The command line or the configuration file is wrong (exit status 2)."""


class ListenError(OSError):
    """The server cannot listen on its address."""


class Failure(NamedTuple):
    cause: Cause
    error: str
    exit_status: ExitStatus


def failure(
    exc: BaseException, *, data_dir: Path | None = None, catalog: Path | None = None
) -> Failure:
    """What a start-up exception means: its `Cause`, a sentence for the log (naming the data
    directory or the ``catalog`` file when they are at fault), the exit status."""
    cause, error = _classify(exc, data_dir)
    if cause is Cause.CATALOG and catalog is not None:
        error = f"the catalog {catalog} cannot be used: {exc}"
    return Failure(cause, error, EXIT_STATUS[cause])


def _classify(exc: BaseException, data_dir: Path | None) -> tuple[Cause, str]:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConfigurationError):
        return Cause.CONFIGURATION, text
    if isinstance(exc, CatalogError):
        return Cause.CATALOG, f"the catalog cannot be used: {text}"
    if isinstance(exc, TlsConfigError):
        return Cause.TLS, f"TLS: {text}"
    if isinstance(exc, ListenError):
        return Cause.LISTEN, text
    if isinstance(exc, DataDirLockedError):
        return Cause.DATA_DIR_LOCKED, text
    if isinstance(exc, JournalError | CdrError):
        damaged = isinstance(exc, JournalCorruptError | CdrCorruptError | CdrSequenceError)
        if not damaged and isinstance(exc.__cause__, OSError):  # a write or fsync failed
            return _classify(exc.__cause__, data_dir)
        return Cause.RECOVERY, text
    if isinstance(exc, OSError):
        where = f"data directory {data_dir}" if data_dir is not None else "the data directory"
        return Cause.DATA_DIR, f"cannot use the {where}: {_os_error(exc, data_dir)}"
    if _is_recovery_error(exc):
        return Cause.RECOVERY, text
    return Cause.INTERNAL, f"{type(exc).__name__}: {text}"


def _os_error(exc: OSError, data_dir: Path | None) -> str:
    """``read-only file system: /x/journal`` rather than ``[Errno 30] Read-only ...: '/x'``."""
    what = os.strerror(exc.errno) if exc.errno is not None else str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        what = "permission denied (the server's user cannot write there)"
    elif exc.errno == errno.EROFS:
        what = "read-only file system"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):  # a file where a directory must be
        what = "not a directory (a file is in the way)"
    elif exc.errno == errno.ENOSPC:
        what = "no space left on the device"
    else:
        what = what[:1].lower() + what[1:]
    if exc.filename is None or (data_dir is not None and Path(exc.filename) == data_dir):
        return what
    return f"{what}: {exc.filename}"


def _is_recovery_error(exc: BaseException) -> bool:
    """The node's `RecoveryError` (imported here, not at the top: the node imports this)."""
    from ocs.node import RecoveryError

    return isinstance(exc, RecoveryError)


def log_startup_failed(
    log: Any,
    exc: BaseException,
    *,
    data_dir: Path | None,
    catalog: Path | None = None,
    **fields: object,
) -> Failure:
    """Log the one `startup.failed` event for `exc` (unless it was logged already) and return
    what it means. Called while `exc` is being handled: with ``--debug`` the logging set-up
    adds its traceback to the event (`ocs.edge.logs.configure_logging`)."""
    found = failure(exc, data_dir=data_dir, catalog=catalog)
    if not getattr(exc, LOGGED_ATTRIBUTE, False):
        where = {} if data_dir is None else {"data_dir": str(data_dir)}
        log.critical(
            "startup.failed",
            cause=found.cause.value,
            error=found.error,
            exit_status=int(found.exit_status),
            **where,
            **fields,
        )
        # (an exception type with slots takes no attribute: then it is not logged again anyway)
        with contextlib.suppress(AttributeError):
            setattr(exc, LOGGED_ATTRIBUTE, True)
    return found
