"""Throwaway X.509 material for TLS tests: a CA, server certificates for chosen names,
client certificates with a chosen CN. Written as PEM files (keys mode 0600, owned by
whoever must read them: a PostgreSQL server refuses a key others can read). And a
throwaway PostgreSQL with ssl=on whose certificate a test can swap (``TlsPostgres``)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)


class TestCA:
    """A certificate authority living in ``folder``."""

    __test__ = False  # not a pytest class

    def __init__(self, folder: Path, name: str = "fleetpool test CA") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        slug = name.replace(" ", "-")
        self.path = folder / f"{slug}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        stem: str,
        cn: str,
        *,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        client: bool = False,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.folder / f"{stem}.crt", self.folder / f"{stem}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key)
        return issued


CURRENT_CERT, CURRENT_KEY = "current.crt", "current.key"


class TlsPostgres:
    """A PostgreSQL with ssl=on and the material to test clients of it: ``ca`` (which
    signed ``right``: 127.0.0.1 and localhost; ``wrong_name``: another name) and
    ``other_ca`` (which signed ``foreign``, for 127.0.0.1). ``present()`` swaps the
    certificate the server shows. Close it (or use ``with``)."""

    def __init__(self) -> None:
        from fleetpool_testing.postgres import PostgresServer
        from fleetpool_testing.processes import run_user

        self.folder = Path(tempfile.mkdtemp(prefix="fleetpool-tls-"))
        self.ca = TestCA(self.folder)
        self.other_ca = TestCA(self.folder, "another CA")
        self.right = self.ca.issue("right", "db.test", dns=("localhost",), ips=("127.0.0.1",))
        self.wrong_name = self.ca.issue("wrong-name", "db.wrong.invalid", dns=("db.wrong.invalid",))
        self.foreign = self.other_ca.issue("foreign", "db.test", ips=("127.0.0.1",))
        shutil.copy(self.right.cert, self.folder / CURRENT_CERT)
        shutil.copy(self.right.key, self.folder / CURRENT_KEY)
        # The server's account must read the keys (PostgreSQL wants them 0600, its own).
        os.chmod(self.folder, 0o755)
        user = run_user(PostgresServer.run_as)
        if user is not None:
            for path in self.folder.iterdir():
                os.chown(path, user.pw_uid, user.pw_gid)
        self.server = PostgresServer(
            settings={
                "ssl": "on",
                "ssl_cert_file": str(self.folder / CURRENT_CERT),
                "ssl_key_file": str(self.folder / CURRENT_KEY),
            }
        )
        try:
            self.server.start()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> TlsPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def served_certificate(self) -> bytes:
        """The DER certificate the server presents now (SSLRequest, then a handshake)."""
        from fleetpool.pg.codec import SSLRequest

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        server = self.server
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(SSLRequest().encode())
            assert sock.recv(1) == b"S"
            with ctx.wrap_socket(sock) as tls:
                return tls.getpeercert(binary_form=True) or b""

    def present(self, issued: Issued) -> None:
        """Make the server present ``issued``: the files it was started with are
        replaced and re-read on reload (asynchronously: waited for, bounded)."""
        for src, dst in ((issued.cert, CURRENT_CERT), (issued.key, CURRENT_KEY)):
            shutil.copy(src, self.folder / dst)
        want = ssl.PEM_cert_to_DER_cert(issued.cert.read_text())
        self.server.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.served_certificate() == want:
                return
            time.sleep(0.02)
        raise AssertionError("the server did not reload its certificate")
