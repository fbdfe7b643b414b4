"""SIGHUP reloads the catalog; a price change under an open grant re-authorises the session
(WIRE.md section 7); a restart with a changed catalog file puts it in force. Replay of
journaled catalogs is covered by the core's replay checks."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from ocs.edge.catalog_files import demo_catalog_text
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import (
    AccountOperation,
    ApplicationId,
    CCRequestType,
    RequestedAction,
    SubscriptionIdType,
)
from protocol.header import Header
from protocol.messages import (
    AMA,
    AMR,
    CCA,
    CCR,
    RAA,
    RAR,
    Answer,
    MsccRequest,
    Request,
    ServiceUnit,
    SubscriptionId,
)
from tests.server.process import ServerProcess

HOST = "reload.test.local"
SUB = (
    SubscriptionId(
        subscription_id_type=SubscriptionIdType.END_USER_E164, subscription_id_data="4915550001"
    ),
)


def initial(session_id: str) -> CCR:
    return CCR(
        session_id=session_id,
        origin_host=HOST,
        origin_realm="test.local",
        destination_realm="test.local",
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=CCRequestType.INITIAL,
        cc_request_number=0,
        subscription_id=SUB,
        multiple_services_credit_control=(
            MsccRequest(rating_group=10, requested_service_unit=ServiceUnit()),
            MsccRequest(rating_group=20, requested_service_unit=ServiceUnit()),
        ),
    )


async def test_sighup_reprices_and_sends_rar_for_the_changed_group_only(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    text = demo_catalog_text()
    catalog.write_text(text)
    server = ServerProcess(tmp_path / "data", "--catalog", str(catalog)).start()
    rars: asyncio.Queue[RAR] = asyncio.Queue()

    def on_request(header: Header, message: Request) -> Answer:
        assert isinstance(message, RAR)
        rars.put_nowait(message)
        return RAA(
            result_code=2001,
            origin_host=HOST,
            origin_realm="test.local",
            session_id=message.session_id,
        )

    try:
        client = await Client.connect(
            port=server.port,
            origin_host=HOST,
            applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
            on_request=on_request,
        )
        created = await client.request(
            AMR(
                origin_host=HOST,
                origin_realm="test.local",
                account_operation=AccountOperation.CREATE,
                account_id="reload-1",
                amount=50_000_000,
                currency_code=978,
                subscription_id=SUB,
            )
        )
        assert isinstance(created, AMA) and created.result_code == 2001
        cca = await client.request(initial(f"{HOST};1;1"))
        assert isinstance(cca, CCA) and cca.result_code == 2001
        # the data price changes (RG 10); video (RG 20) keeps its price: only RG 10 is named
        changed = text.replace(
            'price = "0.01"                 # off-peak', 'price = "0.03"  # off-peak', 1
        )
        assert changed != text
        catalog.write_text(changed)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGHUP)
        rar = await asyncio.wait_for(rars.get(), 5.0)
        assert rar.session_id == f"{HOST};1;1" and rar.rating_group == (10,)
        # an unchanged file, or a broken one, sends nothing
        os.kill(server.proc.pid, signal.SIGHUP)
        catalog.write_text("this is not TOML [")
        os.kill(server.proc.pid, signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert rars.empty()
        await client.close()
        assert server.terminate() == 0
    finally:
        server.kill()


async def test_a_restart_with_a_changed_catalog_file_puts_it_in_force(tmp_path: Path) -> None:
    """The catalog given at start-up replaces the journaled one when it differs (an operator
    who edits the file and restarts expects the new prices)."""
    catalog = tmp_path / "catalog.toml"
    text = demo_catalog_text()
    catalog.write_text(text)
    config = NodeConfig(data_dir=tmp_path / "data", catalog=catalog)
    server_config = ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2)

    async def sms(node: Node, number: int) -> int:
        """Debit one SMS; the account's balance after it."""
        await node.start()
        client = await Client.connect(
            port=node.server.port,
            origin_host=HOST,
            applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
        )
        try:
            if number == 1:
                created = await client.request(
                    AMR(
                        origin_host=HOST,
                        origin_realm="test.local",
                        account_operation=AccountOperation.CREATE,
                        account_id="reload-2",
                        amount=1_000_000,
                        currency_code=978,
                        subscription_id=SUB,
                    )
                )
                assert isinstance(created, AMA) and created.result_code == 2001
            event = await client.request(
                CCR(
                    session_id=f"{HOST};sms;{number}",
                    origin_host=HOST,
                    origin_realm="test.local",
                    destination_realm="test.local",
                    auth_application_id=4,
                    service_context_id="32274@3gpp.org",
                    cc_request_type=CCRequestType.EVENT,
                    cc_request_number=0,
                    subscription_id=SUB,
                    requested_action=RequestedAction.DIRECT_DEBITING,
                    multiple_services_credit_control=(
                        MsccRequest(
                            rating_group=30,
                            requested_service_unit=ServiceUnit(cc_service_specific_units=1),
                        ),
                    ),
                )
            )
            assert isinstance(event, CCA) and event.result_code == 2001, event
            got = await client.request(
                AMR(
                    origin_host=HOST,
                    origin_realm="test.local",
                    account_operation=AccountOperation.GET,
                    account_id="reload-2",
                )
            )
            assert isinstance(got, AMA) and got.account is not None
            return got.account.balance
        finally:
            await client.close()
            await node.stop()
            await node.close()

    assert await sms(await Node.open(server_config, config), 1) == 1_000_000 - 100_000
    catalog.write_text(text.replace('price = "0.10"', 'price = "0.08"', 1))
    assert await sms(await Node.open(server_config, config), 2) == 1_000_000 - 180_000
