"""Certificates made by the tests themselves (trustme): a CA the server trusts for client
certificates, the server's certificate, client certificates named after the peers' Origin-Hosts,
and a rogue CA nobody trusts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from ocs.edge.tls import TlsClientConfig, TlsServerConfig

SERVER_NAME = "ocs.test.local"  # the server's Origin-Host and the name in its certificate
PEER = "p.test.local"
OTHER = "other.test.local"
ADMIN = "ocs-admin.tls.test.local"
UPF_SIM = "upf.sim.test.local"
CLIENT_NAMES = (PEER, OTHER, ADMIN, UPF_SIM)


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path  # the CA of the server and of the client certificates
    server_cert: Path
    server_key: Path

    def client_cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def client_key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def rogue_cert(self) -> Path:
        """A client certificate for PEER, signed by a CA the server does not trust."""
        return self.dir / "rogue.pem"

    def server_config(self, *, require: bool = True, client_ca: bool = True) -> TlsServerConfig:
        return TlsServerConfig(
            cert_file=self.server_cert,
            key_file=self.server_key,
            client_ca_file=self.ca if client_ca else None,
            require_client_cert=require,
        )

    def client_config(self, name: str | None = PEER) -> TlsClientConfig:
        """Trusting our CA, expecting the server's name, with the certificate of `name`."""
        return TlsClientConfig(
            ca_file=self.ca,
            cert_file=self.client_cert(name) if name else None,
            key_file=self.client_key(name) if name else None,
            server_name=SERVER_NAME,
        )

    def serve_args(self, *, require: bool = True) -> list[str]:
        args = ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]
        if require:
            args += ["--tls-client-ca", str(self.ca), "--tls-require-client-cert"]
        return args

    def client_args(self, name: str | None = PEER) -> list[str]:
        args = ["--tls-ca", str(self.ca), "--tls-server-name", SERVER_NAME]
        if name:
            args += ["--tls-cert", str(self.client_cert(name))]
            args += ["--tls-key", str(self.client_key(name))]
        return args


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    server = ca.issue_cert(SERVER_NAME, "localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
    server.private_key_pem.write_to_path(str(root / "server.key"))
    for name in CLIENT_NAMES:
        leaf = ca.issue_cert(name)
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(str(root / f"{name}.pem"), append=True)
        leaf.private_key_pem.write_to_path(str(root / f"{name}.key"))
    rogue = trustme.CA().issue_cert(PEER)
    rogue.private_key_and_cert_chain_pem.write_to_path(str(root / "rogue.pem"))
    return Pki(
        dir=root,
        ca=root / "ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
    )
