"""certs/dev_pki.py end to end: run it, then complete a mutual-TLS handshake over
127.0.0.1 with its files: the CSMS side with the server pair, the station side with the
agent's own TLS context (agent/ocpp/tls.py) and the station pair."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.ocpp.tls import TlsSettings, check_negotiated
from agent.pki.certstore import CertificateStore
from agent.pki.checks import chain_problem, parse_certificates

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "certs" / "dev_pki.py"
FILES = ("csms-root.pem", "csms-root.key", "csms-server.pem", "csms-server.key",
         "station.pem", "station.key")


def dev_pki(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


async def handshake(out: Path, server_hostname: str) -> tuple[str, str]:
    """(CN of the client certificate the server saw, what the client read back)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(out / "csms-server.pem", out / "csms-server.key")
    server_ctx.load_verify_locations(cafile=out / "csms-root.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        subject = dict(pair[0] for pair in peer["subject"])
        seen.set_result(subject["commonName"])
        writer.write(b"hello station\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = TlsSettings((out / "csms-root.pem").read_text(),
                             (out / "station.pem", out / "station.key")).context()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname)
        check_negotiated(writer.get_extra_info("ssl_object"))   # the spec's suites only
        line = await reader.readline()
        writer.close()
        return await asyncio.wait_for(seen, 5), line.decode().strip()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_dev_pki_makes_a_working_mutual_tls_setup(tmp_path: Path, key_type: str) -> None:
    out = tmp_path / "pki"
    done = dev_pki(str(out), "--station-id", "CS-001", "--host", "127.0.0.1",
                   "--key-type", key_type)
    assert done.returncode == 0, done.stderr
    for name in ("ca_file", "cert_file", "key_file", "csms-root.pem", "station.key"):
        assert name in done.stdout
    assert "PRIVATE KEY" not in done.stdout
    assert out.stat().st_mode & 0o777 == 0o700
    for name in FILES:
        wanted = 0o600 if name.endswith(".key") else 0o644
        assert (out / name).stat().st_mode & 0o777 == wanted, name
    station = x509.load_pem_x509_certificate((out / "station.pem").read_bytes())
    assert station.subject.rfc4514_string() == "O=Dev CSO,CN=CS-001"
    key_class = ec.EllipticCurvePublicKey if key_type == "ec" else rsa.RSAPublicKey
    assert isinstance(station.public_key(), key_class)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in station.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    cn, line = asyncio.run(handshake(out, "127.0.0.1"))
    assert (cn, line) == ("CS-001", "hello station")


def test_default_hosts_cover_localhost_by_name(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    assert dev_pki(str(out), "--station-id", "CS-002").returncode == 0
    cn, _ = asyncio.run(handshake(out, "localhost"))
    assert cn == "CS-002"


def test_openssl_agrees_on_purposes(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    assert dev_pki(str(out), "--station-id", "CS-001").returncode == 0
    for name, purpose in (("station.pem", "sslclient"), ("csms-server.pem", "sslserver")):
        done = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile",
                               str(out / "csms-root.pem"), str(out / name)],
                              capture_output=True, text=True)
        assert done.returncode == 0 and ": OK" in done.stdout, done.stdout + done.stderr


def test_the_station_store_takes_the_dev_root_and_checks_chains_with_it(tmp_path) -> None:
    out = tmp_path / "pki"
    assert dev_pki(str(out), "--station-id", "CS-001").returncode == 0
    store = CertificateStore(tmp_path / "certs")
    now = datetime.now(timezone.utc)
    assert store.install("CSMSRootCertificate", (out / "csms-root.pem").read_text(), now).ok
    station = parse_certificates((out / "station.pem").read_text())
    assert chain_problem(station, store.csms_roots(), now) is None


def test_dev_pki_does_not_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    assert dev_pki(str(out), "--station-id", "CS-001").returncode == 0
    before = (out / "csms-root.key").read_bytes()
    refused = dev_pki(str(out), "--station-id", "CS-001")
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert (out / "csms-root.key").read_bytes() == before
    assert dev_pki(str(out), "--station-id", "CS-001", "--force").returncode == 0
    assert (out / "csms-root.key").read_bytes() != before


def test_dev_pki_needs_a_station_id(tmp_path: Path) -> None:
    done = dev_pki(str(tmp_path / "pki"))
    assert done.returncode == 2 and "--station-id" in done.stderr
