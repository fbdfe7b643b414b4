"""Protocol violations as exceptions.

A `ProtocolError` is raised by the codec or the connection for a request that cannot be
accepted; it carries the Result-Code and Failed-AVP the answer must have. The single place that
turns it into an answer is `Connection.send_error` (and the connection's own checks).
"""

from __future__ import annotations

from typing import Any

from protocol.codes import ResultCode, is_protocol_error


class ProtocolError(Exception):
    """A request the receiver rejects with `result_code` (WIRE.md sections 1-3)."""

    def __init__(
        self,
        result_code: int,
        message: str,
        *,
        failed_avp: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.result_code = result_code
        self.message = message
        self.failed_avp = failed_avp
        self.session_id = session_id

    @property
    def error_flag(self) -> bool:
        return is_protocol_error(self.result_code)

    def __repr__(self) -> str:
        return (
            f"ProtocolError({self.result_code}, {self.message!r}, failed_avp={self.failed_avp!r})"
        )


class FramingError(Exception):
    """The byte stream can no longer be trusted: the receiver closes the connection.

    `answer_code` is set when a complete request header was read and may be answered first
    (5015 DIAMETER_INVALID_MESSAGE_LENGTH for a bad length).
    """

    def __init__(self, message: str, *, answer_code: ResultCode | None = None) -> None:
        super().__init__(message)
        self.answer_code = answer_code


class LocalProtocolError(Exception):
    """The local side tried something the protocol does not allow (a bug in the caller)."""
