"""The peer state machine (WIRE.md section 4), written as a transition table.

Like h11's, the table is the whole truth: a (state, input) pair that is not in it is a protocol
violation, never a silent no-op.
"""

from __future__ import annotations

import enum
from typing import Final

from protocol.errors import LocalProtocolError


class Role(enum.Enum):
    CLIENT = "client"  # sends CER
    SERVER = "server"  # answers CER


class PeerState(enum.Enum):
    IDLE = "idle"  # client: connected, CER not sent yet
    WAIT_CEA = "wait-cea"  # client: CER sent
    WAIT_CER = "wait-cer"  # server: connected, waiting for CER
    OPEN = "open"
    CLOSING = "closing"  # DPR sent or received
    CLOSED = "closed"


class PeerInput(enum.Enum):
    SEND_CER = "send-cer"
    RECV_CEA_SUCCESS = "recv-cea-success"
    RECV_CEA_FAILURE = "recv-cea-failure"
    RECV_CER_ACCEPTED = "recv-cer-accepted"  # CEA 2001 sent
    RECV_CER_REFUSED = "recv-cer-refused"  # CEA 3010 / 5010 / invalid CER sent
    RECV_REQUEST_BEFORE_CER = "recv-request-before-cer"  # answered 3010
    SEND_DPR = "send-dpr"
    RECV_DPR = "recv-dpr"  # DPA sent
    RECV_DPA = "recv-dpa"
    CONNECTION_LOST = "connection-lost"  # framing error, EOF, local close


S, In = PeerState, PeerInput

TRANSITIONS: Final[dict[tuple[PeerState, PeerInput], PeerState]] = {
    (S.IDLE, In.SEND_CER): S.WAIT_CEA,
    (S.WAIT_CEA, In.RECV_CEA_SUCCESS): S.OPEN,
    (S.WAIT_CEA, In.RECV_CEA_FAILURE): S.CLOSED,
    (S.WAIT_CER, In.RECV_CER_ACCEPTED): S.OPEN,
    (S.WAIT_CER, In.RECV_CER_REFUSED): S.CLOSED,
    (S.WAIT_CER, In.RECV_REQUEST_BEFORE_CER): S.CLOSED,
    (S.OPEN, In.SEND_DPR): S.CLOSING,
    (S.OPEN, In.RECV_DPR): S.CLOSING,
    (S.CLOSING, In.RECV_DPR): S.CLOSING,  # DPRs crossed
    (S.CLOSING, In.RECV_DPA): S.CLOSED,
    **{(state, In.CONNECTION_LOST): S.CLOSED for state in PeerState},
}

INITIAL_STATE: Final[dict[Role, PeerState]] = {Role.CLIENT: S.IDLE, Role.SERVER: S.WAIT_CER}

# States in which each side may exchange application requests and watchdogs.
ACTIVE_STATES: Final[frozenset[PeerState]] = frozenset({S.OPEN, S.CLOSING})


class PeerStateMachine:
    __slots__ = ("role", "state")

    def __init__(self, role: Role) -> None:
        self.role = role
        self.state = INITIAL_STATE[role]

    def process(self, event: PeerInput) -> PeerState:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"{event.value} is not allowed in state {self.state.value}"
            ) from None
        return self.state

    def allows(self, event: PeerInput) -> bool:
        return (self.state, event) in TRANSITIONS
