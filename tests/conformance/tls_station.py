"""What the security and network-profile cases (A, B09/B10, M) need besides the rig:
the lab's PKI (CSMS roots, server certificates good and bad), TLS CSMSs on loopback, a
station configured for a given security profile, and "Booted" on whichever CSMS the
station moved to.

Everything runs in-process on the rig's ManualClock: a failed connection attempt is real
I/O on loopback, the back-off before the next one is a timer the test moves past.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from agent.clock import ManualClock
from agent.demo.csms import Csms
from certs import dev_pki
from tests.conformance.rig import STATION, Rig
from tests.harness import PASSWORD

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Authority:
    """A root CA of the lab and the files a CSMS or station config points at."""

    cert: x509.Certificate
    key: Any
    pem_path: Path

    @property
    def pem(self) -> str:
        return self.pem_path.read_text()

    def server(self, directory: Path, name: str, *, hosts: tuple[str, ...] = (HOST,),
               expired: bool = False) -> tuple[Path, Path]:
        """(cert.pem, key.pem) of a TLS server certificate issued by this root."""
        key = dev_pki.new_key()
        when: dict[str, Any] = {}
        if expired:
            start = datetime.now(timezone.utc) - timedelta(days=30)
            when = {"not_before": start, "not_after": start + timedelta(days=1)}
        cert = dev_pki.issue(self.cert, self.key, hosts[0], key.public_key(), hosts=hosts,
                             server=True, **when)
        paths = directory / f"{name}.pem", directory / f"{name}.key"
        paths[0].write_bytes(dev_pki.pem(cert))
        paths[1].write_bytes(dev_pki.key_pem(key))
        return paths

    def hash_data(self) -> dict[str, str]:
        """The root's CertificateHashDataType in SHA256, computed here from the DER, not
        by the agent's code: issuer name and issuer key (its own), serial in hex."""
        tbs = self.cert.issuer.public_bytes()
        spki = self.cert.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"hashAlgorithm": "SHA256",
                "issuerNameHash": hashlib.sha256(tbs).hexdigest(),
                "issuerKeyHash": hashlib.sha256(spki).hexdigest(),
                "serialNumber": format(self.cert.serial_number, "x")}


def authority(directory: Path, name: str, *, expired: bool = False) -> Authority:
    """A new self-signed root CA (expired: valid for a day a month ago)."""
    when: dict[str, Any] = {}
    if expired:
        start = datetime.now(timezone.utc) - timedelta(days=30)
        when = {"not_before": start, "not_after": start + timedelta(days=1)}
    cert, key = dev_pki.make_root(f"{name} Root CA", **when)
    path = directory / f"{name}-root.pem"
    path.write_bytes(dev_pki.pem(cert))
    return Authority(cert, key, path)


def same_hash(entry: dict, expected: dict[str, str]) -> bool:
    """CertificateHashDataType equality as a lab compares it (identifierStrings
    case-insensitively, the serial as a number)."""
    return (entry["hashAlgorithm"] == expected["hashAlgorithm"]
            and entry["issuerNameHash"].lower() == expected["issuerNameHash"]
            and entry["issuerKeyHash"].lower() == expected["issuerKeyHash"]
            and int(entry["serialNumber"], 16) == int(expected["serialNumber"], 16))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def tls_csms(cert: Path, key: Path, *, port: int = 0) -> Csms:
    return Csms(port=port, passwords={STATION: PASSWORD}, ssl_context=server_context(cert, key))


def mutual_tls_csms(cert: Path, key: Path, client_root: Path) -> Csms:
    """A CSMS for security profile 3: it wants a client certificate from `client_root`
    and no password."""
    context = server_context(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_root)
    return Csms(ssl_context=context)


def plain_csms(port: int = 0) -> Csms:
    return Csms(port=port, passwords={STATION: PASSWORD})


def station_config(directory: Path, url: str, profile: int, *, ca: Path | None = None,
                   extra: str = "") -> Path:
    lines = [f'url = "{url}"', f"security_profile = {profile}", f'password = "{PASSWORD}"']
    if ca is not None:
        lines.append(f'ca_file = "{ca}"')
    path = directory / "station-agent.toml"
    path.write_text(
        f'[station]\nid = "{STATION}"\nvendor = "Example"\nmodel = "AC-22"\n'
        'serial_number = "0001"\n\n[csms]\n' + "\n".join(lines) + "\n\n"
        '[storage]\ndir = "state"\n\n[hal]\ndriver = "mock"\n\n'
        "[[evse]]\nid = 1\nmax_current_a = 32\nphases = 3\nnominal_voltage_v = 230\n" + extra)
    return path


@contextlib.asynccontextmanager
async def station_on(tmp_path: Path, csms: Csms, *, profile: int = 1, ca: Path | None = None,
                     booted: bool = True, url: str | None = None) -> AsyncIterator[Rig]:
    """The daemon in-process on the rig's clock, its network profile 1 pointing at `csms`
    (or `url`) with `profile`; started (and Booted, unless `booted` is False)."""
    config = station_config(tmp_path, url or csms.url, profile, ca=ca)
    rig = Rig(tmp_path, csms, ManualClock(), config, 1)
    try:
        await rig.start(wait_booted=booted)
        yield rig
    finally:
        await rig.shutdown()


async def booted_on(rig: Rig, csms: Csms, timeout: float = 10) -> dict:
    """Part 6's Booted on `csms` (the station's next connection there): BootNotification
    Accepted, every connector Available, StartupOfTheDevice or ResetOrReboot. Returns the
    SecurityEventNotification."""
    after = rig.link if rig.csms is csms else None
    rig.csms = csms
    rig.link = await csms.wait_station(STATION, timeout=timeout, after=after)
    await rig.expect("BootNotification")
    status = await rig.expect("StatusNotification")
    assert status["connectorStatus"] == "Available"
    assert status["evseId"] != 0 and status["connectorId"] != 0
    event = await rig.expect("SecurityEventNotification", where=lambda p: p["type"] in (
        "StartupOfTheDevice", "ResetOrReboot"))
    await rig.settle()
    return event


async def renew_charging_station_certificate(rig: Rig, root: Authority) -> x509.Certificate:
    """Memory state RenewChargingStationCertificate, with its tool validations; the CSMS's
    CA is `root`. Returns the certificate the station now holds."""
    answer = await rig.call("TriggerMessage",
                            {"requestedMessage": "SignChargingStationCertificate"})
    assert answer["status"] == "Accepted"                                           # step 2
    request = await rig.expect("SignCertificate")                                   # step 3
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert csr.is_signature_valid
    assert request["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert key.key_size >= 224
    else:                                       # RSA or DSA
        assert isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)), type(key)
        assert key.key_size >= 2048
    leaf = dev_pki.sign_csr(request["csr"], root.cert, root.key, days=30)
    answer = await rig.call("CertificateSigned", {
        "certificateChain": dev_pki.pem(leaf).decode(),
        "certificateType": "ChargingStationCertificate"})
    assert answer["status"] == "Accepted"                                           # step 6
    await rig.settle()
    return leaf


def security_log(rig: Rig) -> list[tuple[str, str | None]]:
    """(type, techInfo) of every event in the station's security log, oldest first: what
    a lab reads from a SecurityLog upload, read here from the database."""
    import sqlite3
    db = sqlite3.connect(rig.tmp_path / "state" / "station-agent.db")
    try:
        return db.execute("SELECT type, tech_info FROM security_log ORDER BY id").fetchall()
    finally:
        db.close()


async def refusing_tls_server(port: int = 0) -> asyncio.AbstractServer:
    """A TLS server that only speaks TLS 1.0/1.1: it reads the ClientHello and answers
    what OpenSSL answers then (a protocol_version alert), written out before it closes,
    as a real server does (asyncio's own TLS server drops the connection unflushed)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("ALL:@SECLEVEL=0")
    with _no_deprecation():
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                incoming.write(data)
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    continue
                except ssl.SSLError:
                    break
        finally:
            alert = outgoing.read()
            if alert:
                writer.write(alert)
                with contextlib.suppress(OSError):
                    await writer.drain()
            writer.close()

    return await asyncio.start_server(handle, HOST, port)


@contextlib.contextmanager
def _no_deprecation() -> Any:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def network_profile(slot: int, url: str, security_profile: int,
                    message_timeout: int = 30) -> dict:
    """A SetNetworkProfileRequest as the OCTT sends it."""
    return {"configurationSlot": slot, "connectionData": {
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url,
        "messageTimeout": message_timeout, "securityProfile": security_profile,
        "ocppInterface": "Wired0"}}
