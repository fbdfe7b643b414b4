"""The peer state machine is its table: every listed transition works, nothing else does."""

from __future__ import annotations

import itertools

import pytest

from protocol.errors import LocalProtocolError
from protocol.peer import TRANSITIONS, PeerInput, PeerState, PeerStateMachine, Role


@pytest.mark.parametrize(("state", "event"), list(itertools.product(PeerState, PeerInput)), ids=str)
def test_table_is_the_whole_truth(state: PeerState, event: PeerInput) -> None:
    machine = PeerStateMachine(Role.SERVER)
    machine.state = state
    if (state, event) in TRANSITIONS:
        assert machine.process(event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(LocalProtocolError):
            machine.process(event)
        assert machine.state is state


def test_initial_states() -> None:
    assert PeerStateMachine(Role.SERVER).state is PeerState.WAIT_CER
    assert PeerStateMachine(Role.CLIENT).state is PeerState.IDLE


def test_every_state_can_be_lost_and_closed_is_terminal() -> None:
    for state in PeerState:
        assert TRANSITIONS[(state, PeerInput.CONNECTION_LOST)] is PeerState.CLOSED
    assert [e for (s, e) in TRANSITIONS if s is PeerState.CLOSED] == [PeerInput.CONNECTION_LOST]
